#include "comm/grad_reducer.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "comm/gradient_hook.h"

namespace muonrun {

std::vector<GradientUnit> plan_buckets(const std::vector<torch::Tensor>& all_params,
                                       const std::vector<int>& params, int64_t bucket_bytes) {
  std::vector<GradientUnit> buckets;
  int64_t bytes = 0;
  for (int p : params) {
    const int64_t size = all_params[p].numel() * all_params[p].element_size();
    if (buckets.empty() || (bytes > 0 && bytes + size > bucket_bytes)) {
      buckets.push_back({GradientUnit::Kind::Bucket, {}});
      bytes = 0;
    }
    buckets.back().params.push_back(p);
    bytes += size;
  }
  return buckets;
}

GradientReducer::GradientReducer(Communicator& comm, std::vector<torch::Tensor> params,
                                 std::vector<GradientUnit> units)
    : comm_(comm), params_(std::move(params)), units_(std::move(units)) {
  unit_of_param_.assign(params_.size(), -1);
  for (size_t u = 0; u < units_.size(); ++u) {
    const auto& unit = units_[u];
    if (unit.kind == GradientUnit::Kind::Shard && static_cast<int>(unit.params.size()) != comm_.size())
      throw std::invalid_argument("a shard unit needs one slot per rank");
    for (int p : unit.params) {
      if (p < 0) continue;
      if (unit_of_param_.at(p) != -1) throw std::invalid_argument("a parameter is in two gradient units");
      unit_of_param_[p] = static_cast<int>(u);
    }
  }
  for (size_t p = 0; p < params_.size(); ++p)
    if (unit_of_param_[p] == -1) throw std::invalid_argument("a parameter is in no gradient unit");

  // Initial launch order: by the last-registered parameter of each unit, which
  // backward usually makes ready first.
  order_.resize(units_.size());
  std::iota(order_.begin(), order_.end(), 0);
  auto first_ready = [&](size_t u) {
    int newest = -1;
    for (int p : units_[u].params) newest = std::max(newest, p);
    return newest;
  };
  std::stable_sort(order_.begin(), order_.end(), [&](size_t a, size_t b) { return first_ready(a) > first_ready(b); });

  pending_.resize(units_.size());
  for (size_t p = 0; p < params_.size(); ++p)
    accumulators_.push_back(on_gradient_ready(params_[p], [this, p] { mark_ready(static_cast<int>(p)); }));
}

void GradientReducer::begin_backward(bool communicate) {
  std::lock_guard<std::mutex> lock(mutex_);
  communicating_ = communicate;
  if (!communicate) return;
  next_launch_ = 0;
  missing_.assign(units_.size(), 0);
  for (size_t u = 0; u < units_.size(); ++u)
    for (int p : units_[u].params) missing_[u] += p >= 0;
  ready_.assign(params_.size(), false);
  for (auto& p : pending_) p = Pending{};
  observed_order_.clear();
  events_.clear();
}

void GradientReducer::mark_ready(int param) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!communicating_) return;
  if (ready_[param]) throw std::logic_error("gradient hook fired twice for one parameter in one backward");
  ready_[param] = true;
  observed_order_.push_back(param);
  events_.push_back("ready " + std::to_string(param));
  missing_[unit_of_param_[param]] -= 1;
  launch_ready_units();
}

void GradientReducer::launch_ready_units() {
  while (next_launch_ < order_.size() && missing_[order_[next_launch_]] == 0) launch(order_[next_launch_++]);
}

void GradientReducer::launch(size_t u) {
  const auto& unit = units_[u];
  auto& pending = pending_[u];
  // Copy the gradients into one flat buffer; a parameter that got no
  // gradient contributes zeros, so every rank sends the same shape.
  auto grad_or_zero = [&](int p) {
    const auto& g = params_[p].grad();
    return g.defined() ? g.reshape({-1}) : torch::zeros({params_[p].numel()}, params_[p].options());
  };
  if (unit.kind == GradientUnit::Kind::Bucket) {
    std::vector<torch::Tensor> flat;
    for (int p : unit.params) flat.push_back(grad_or_zero(p));
    pending.input = torch::cat(flat);
    pending.work = comm_.all_reduce_mean(pending.input);
  } else {
    int64_t numel = 0;
    for (int p : unit.params)
      if (p >= 0) numel = params_[p].numel();
    auto options = params_[*std::find_if(unit.params.begin(), unit.params.end(), [](int p) { return p >= 0; })].options();
    pending.input = torch::zeros({comm_.size(), numel}, options);
    for (size_t slot = 0; slot < unit.params.size(); ++slot)
      if (unit.params[slot] >= 0) pending.input[slot].copy_(grad_or_zero(unit.params[slot]));
    pending.output = torch::empty({numel}, options);
    pending.work = comm_.reduce_scatter_mean(pending.input, pending.output);
  }
  pending.launched = true;
  events_.push_back("launch " + std::to_string(u));
}

void GradientReducer::end_backward() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!communicating_) return;
    events_.push_back("end_backward");
    while (next_launch_ < order_.size()) launch(order_[next_launch_++]);
    communicating_ = false;
  }
  if (!order_settled_) adopt_observed_order();
}

void GradientReducer::adopt_observed_order() {
  // Launch each unit at the point its last parameter became ready in this
  // step. Rank 0's observation is broadcast, so every rank uses one order.
  std::vector<int64_t> position(params_.size(), static_cast<int64_t>(params_.size()));
  for (size_t i = 0; i < observed_order_.size(); ++i) position[observed_order_[i]] = static_cast<int64_t>(i);
  std::vector<int64_t> complete_at(units_.size(), -1);
  for (size_t u = 0; u < units_.size(); ++u)
    for (int p : units_[u].params)
      if (p >= 0) complete_at[u] = std::max(complete_at[u], position[p]);
  std::vector<int64_t> order(units_.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return complete_at[a] < complete_at[b]; });
  auto shared = torch::tensor(order, torch::kLong).to(comm_.device());
  comm_.broadcast(shared, 0)->wait();
  shared = shared.to(torch::kCPU);
  for (size_t i = 0; i < order_.size(); ++i) order_[i] = static_cast<size_t>(shared[i].item<int64_t>());
  order_settled_ = true;
}

void GradientReducer::wait_bucket(size_t u) {
  auto& pending = pending_.at(u);
  if (!pending.launched) throw std::logic_error("wait_bucket before the bucket was launched");
  pending.work->wait();
  int64_t offset = 0;
  for (int p : units_[u].params) {
    auto& param = params_[p];
    auto mean = pending.input.narrow(0, offset, param.numel()).view(param.sizes());
    if (param.grad().defined()) param.mutable_grad().copy_(mean);
    else param.mutable_grad() = mean.clone();
    offset += param.numel();
  }
  pending = Pending{};
}

torch::Tensor GradientReducer::wait_shard(size_t u) {
  auto& pending = pending_.at(u);
  if (!pending.launched) throw std::logic_error("wait_shard before the shard was launched");
  pending.work->wait();
  const int mine = units_[u].params[comm_.rank()];
  torch::Tensor result = mine >= 0 ? pending.output.view(params_[mine].sizes()) : torch::Tensor();
  pending = Pending{};
  return result;
}

std::vector<std::string> GradientReducer::events() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_;
}

}  // namespace muonrun
