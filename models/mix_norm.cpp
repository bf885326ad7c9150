#include "models/mix_norm.h"

#include <torch/csrc/autograd/custom_function.h>

#include "models/fused_cpu.h"
#ifdef MUONRUN_WITH_CUDA
#include "models/fused_cuda.h"
#endif

namespace muonrun {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int kMaxTerms = 3;

// What backward writes for term k: nothing, G itself (a weight of 1), or w_k G.
enum TermGrad : int64_t { kNoGrad = 0, kSameGrad = 1, kScaledGrad = 2 };

// terms: contiguous [rows, D]; weights: [K] in the accumulation type.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> forward_cpu(const std::vector<torch::Tensor>& terms,
                                                                    const torch::Tensor& weights) {
  const auto& t0 = terms[0];
  const int64_t K = static_cast<int64_t>(terms.size());
  const int64_t D = t0.size(-1), rows = t0.numel() / D;
  auto x = torch::empty_like(t0), normed = torch::empty_like(t0);
  auto inv = torch::empty({rows}, t0.options().dtype(fused_cpu::stat_dtype(t0.scalar_type())));
  MUONRUN_DISPATCH_FUSED(t0.scalar_type(), "mix_norm", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pt[kMaxTerms] = {};
    acc_t w[kMaxTerms] = {};
    for (int64_t k = 0; k < K; ++k) {
      pt[k] = terms[k].data_ptr<scalar_t>();
      w[k] = weights.data_ptr<acc_t>()[k];
    }
    scalar_t *px = x.data_ptr<scalar_t>(), *pn = normed.data_ptr<scalar_t>();
    acc_t* pinv = inv.data_ptr<acc_t>();
    fused_cpu::for_rows(rows, D, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t o = r * D;
        scalar_t* xr = px + o;
        // Products rounded one by one and summed left to right: in fp32 the
        // composite's l0 * x_in + l1 * x0 bit for bit.
        if (K == 2) {
          for (int64_t i = 0; i < D; ++i)
            xr[i] = static_cast<scalar_t>(w[0] * static_cast<acc_t>(pt[0][o + i]) +
                                          w[1] * static_cast<acc_t>(pt[1][o + i]));
        } else {
          for (int64_t i = 0; i < D; ++i)
            xr[i] = static_cast<scalar_t>(w[0] * static_cast<acc_t>(pt[0][o + i]) +
                                          w[1] * static_cast<acc_t>(pt[1][o + i]) +
                                          w[2] * static_cast<acc_t>(pt[2][o + i]));
        }
        // The norm of x as stored (rounded to its dtype), as the composite.
        const acc_t s = fused_cpu::inv_rms(fused_cpu::dot<acc_t>(xr, xr, D), D);
        for (int64_t i = 0; i < D; ++i) pn[o + i] = static_cast<scalar_t>(static_cast<acc_t>(xr[i]) * s);
        pinv[r] = s;
      }
    });
  });
  return {x, normed, inv};
}

// G = g_x + s g_n - s^3 x (g_n . x) / D per row (g_x may be undefined);
// grads[k] per `modes`; dots[:, j] = G . dot_terms[j] per row.
std::tuple<std::vector<torch::Tensor>, torch::Tensor> backward_cpu(
    const torch::Tensor& g_x, const torch::Tensor& g_n, const torch::Tensor& x, const torch::Tensor& inv,
    const torch::Tensor& weights, const std::vector<int64_t>& modes, const std::vector<torch::Tensor>& dot_terms) {
  const int64_t K = static_cast<int64_t>(modes.size()), J = static_cast<int64_t>(dot_terms.size());
  const int64_t D = x.size(-1), rows = inv.numel();
  const bool need_g = std::find(modes.begin(), modes.end(), kSameGrad) != modes.end();
  auto G = need_g ? torch::empty_like(x) : torch::Tensor();
  std::vector<torch::Tensor> grads(K);
  for (int64_t k = 0; k < K; ++k)
    if (modes[k] == kSameGrad) grads[k] = G;
    else if (modes[k] == kScaledGrad) grads[k] = torch::empty_like(x);
  auto dots = J ? torch::empty({rows, J}, inv.options()) : torch::Tensor();
  MUONRUN_DISPATCH_FUSED(x.scalar_type(), "mix_norm_backward", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* px = x.data_ptr<scalar_t>();
    const scalar_t* pgx = g_x.defined() ? g_x.data_ptr<scalar_t>() : nullptr;
    const scalar_t* pgn = g_n.data_ptr<scalar_t>();
    const acc_t* pinv = inv.data_ptr<acc_t>();
    scalar_t* pG = need_g ? G.data_ptr<scalar_t>() : nullptr;
    scalar_t* pscaled[kMaxTerms] = {};
    acc_t w[kMaxTerms] = {};
    int64_t scaled = 0;
    for (int64_t k = 0; k < K; ++k)
      if (modes[k] == kScaledGrad) {
        pscaled[scaled] = grads[k].data_ptr<scalar_t>();
        w[scaled++] = weights.data_ptr<acc_t>()[k];
      }
    const scalar_t* pdt[kMaxTerms] = {};
    for (int64_t j = 0; j < J; ++j) pdt[j] = dot_terms[j].data_ptr<scalar_t>();
    acc_t* pdots = J ? dots.data_ptr<acc_t>() : nullptr;
    fused_cpu::for_rows(rows, D, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t o = r * D;
        const acc_t s = pinv[r];
        const acc_t c = s * s * s * fused_cpu::dot<acc_t>(pgn + o, px + o, D) / static_cast<acc_t>(D);
        acc_t acc[kMaxTerms] = {};
        for (int64_t i = 0; i < D; ++i) {
          const acc_t from_norm = s * static_cast<acc_t>(pgn[o + i]) - c * static_cast<acc_t>(px[o + i]);
          // G rounded to x's dtype, as the composite's gradient of x.
          const scalar_t gd = static_cast<scalar_t>(pgx ? static_cast<acc_t>(pgx[o + i]) + from_norm : from_norm);
          const acc_t gv = static_cast<acc_t>(gd);
          if (pG) pG[o + i] = gd;
          for (int64_t k = 0; k < scaled; ++k) pscaled[k][o + i] = static_cast<scalar_t>(w[k] * gv);
          for (int64_t j = 0; j < J; ++j) acc[j] += gv * static_cast<acc_t>(pdt[j][o + i]);
        }
        for (int64_t j = 0; j < J; ++j) pdots[r * J + j] = acc[j];
      }
    });
  });
  return {grads, dots};
}

struct MixNormFn : torch::autograd::Function<MixNormFn> {
  // `needs`: bit 2k says term k needs its gradient, bit 2k + 1 its weight.
  static variable_list forward(AutogradContext* ctx, const torch::Tensor& t0, const std::optional<torch::Tensor>& w0,
                               const torch::Tensor& t1, const std::optional<torch::Tensor>& w1,
                               const std::optional<torch::Tensor>& t2, const std::optional<torch::Tensor>& w2,
                               int64_t needs) {
    std::vector<torch::Tensor> terms{t0.contiguous(), t1.contiguous()};
    std::vector<std::optional<torch::Tensor>> given{w0, w1};
    if (t2 && t2->defined()) {
      terms.push_back(t2->contiguous());
      given.push_back(w2);
    }
    const int64_t K = static_cast<int64_t>(terms.size());
    const auto acc = fused_cpu::stat_dtype(t0.scalar_type());
    std::vector<torch::Tensor> w;
    for (const auto& g : given)
      w.push_back(g && g->defined() ? g->detach().to(acc).reshape({})
                                    : torch::ones({}, t0.options().dtype(acc)));
    auto weights = torch::stack(w);
    torch::Tensor x, normed, inv;
#ifdef MUONRUN_WITH_CUDA
    if (t0.is_cuda())
      std::tie(x, normed, inv) = cuda::mix_norm_forward(terms, weights);
    else
#endif
      std::tie(x, normed, inv) = forward_cpu(terms, weights);

    // Gradient modes and the terms whose weight needs a gradient (saved).
    std::vector<int64_t> modes(K), dot_of(K, -1);
    std::vector<torch::Tensor> to_save{x, inv, weights};
    for (int64_t k = 0; k < K; ++k) {
      const bool unit = !(given[k] && given[k]->defined());
      modes[k] = !(needs >> (2 * k) & 1) ? kNoGrad : unit ? kSameGrad : kScaledGrad;
      if (!unit && (needs >> (2 * k + 1) & 1)) {
        dot_of[k] = static_cast<int64_t>(to_save.size()) - 3;
        to_save.push_back(terms[k]);
      }
    }
    ctx->save_for_backward(to_save);
    ctx->saved_data["modes"] = modes;
    ctx->saved_data["dot_of"] = dot_of;
    ctx->set_materialize_grads(false);
    return {x, normed};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& x = saved[0];
    const auto& inv = saved[1];
    const auto& weights = saved[2];
    const std::vector<torch::Tensor> dot_terms(saved.begin() + 3, saved.end());
    const auto modes = ctx->saved_data["modes"].toIntVector();
    const auto dot_of = ctx->saved_data["dot_of"].toIntVector();
    const int64_t K = static_cast<int64_t>(modes.size());
    variable_list out(7);
    if (!grads[0].defined() && !grads[1].defined()) return out;
    const auto same = [&](const torch::Tensor& g) {
      return g.defined() ? g.to(x.scalar_type()).contiguous() : torch::Tensor();
    };
    auto g_x = same(grads[0]);
    auto g_n = grads[1].defined() ? same(grads[1]) : torch::zeros_like(x);
    std::vector<torch::Tensor> term_grads;
    torch::Tensor dots;
#ifdef MUONRUN_WITH_CUDA
    if (x.is_cuda())
      std::tie(term_grads, dots) = cuda::mix_norm_backward(g_x, g_n, x, inv, weights, modes, dot_terms);
    else
#endif
      std::tie(term_grads, dots) = backward_cpu(g_x, g_n, x, inv, weights, modes, dot_terms);
    // Each learned weight's gradient: its per-row dot products summed in double.
    auto weight_grads = dots.defined() ? dots.to(torch::kDouble).sum(0) : torch::Tensor();
    for (int64_t k = 0; k < K; ++k) {
      const int64_t slot = k < 2 ? 2 * k : 4;  // t0 w0 t1 w1 t2 w2 needs
      out[slot] = term_grads[k];
      if (dot_of[k] >= 0) out[slot + 1] = weight_grads[dot_of[k]].to(weights.scalar_type());
    }
    return out;
  }
};

}  // namespace

MixNorm mix_norm(const std::vector<MixTerm>& terms) {
  TORCH_CHECK(terms.size() == 2 || terms.size() == 3, "mix_norm: 2 or 3 terms, got ", terms.size());
  const auto& t0 = terms[0].value;
  fused_cpu::check_device("mix_norm", t0);
  int64_t needs = 0;
  for (size_t k = 0; k < terms.size(); ++k) {
    const auto& [value, weight] = terms[k];
    TORCH_CHECK(value.sizes() == t0.sizes() && value.scalar_type() == t0.scalar_type() &&
                    value.device() == t0.device(),
                "mix_norm: term ", k, " is ", value.sizes(), " ", value.scalar_type(), " on ", value.device(),
                ", term 0 ", t0.sizes(), " ", t0.scalar_type(), " on ", t0.device());
    TORCH_CHECK(!weight.defined() || (weight.dim() == 0 && weight.device() == t0.device()),
                "mix_norm: weight ", k, " must be a 0-dim tensor on ", t0.device());
    if (value.requires_grad()) needs |= int64_t{1} << (2 * k);
    if (weight.defined() && weight.requires_grad()) needs |= int64_t{1} << (2 * k + 1);
  }
  const auto opt = [&](size_t k, bool weight) -> std::optional<torch::Tensor> {
    if (k >= terms.size()) return std::nullopt;
    const auto& t = weight ? terms[k].weight : terms[k].value;
    return t.defined() ? std::optional<torch::Tensor>(t) : std::nullopt;
  };
  auto out = MixNormFn::apply(t0, opt(0, true), terms[1].value, opt(1, true), opt(2, false), opt(2, true), needs);
  return {out[0], out[1]};
}

}  // namespace muonrun
