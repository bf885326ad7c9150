#include "trainer/tools/t_test.h"

#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

namespace muonrun {
namespace {

// The continued fraction of the incomplete beta function (modified Lentz's
// method; Press et al., Numerical Recipes, 3rd ed., section 6.4), converging
// for x < (a + 1) / (a + b + 2).
double beta_continued_fraction(double a, double b, double x) {
  constexpr double tiny = 1e-300, eps = 1e-16;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  d = 1 / (std::abs(d) < tiny ? tiny : d);
  double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const double m2 = 2.0 * m;
    for (const double coefficient : {m * (b - m) * x / ((a + m2 - 1) * (a + m2)),
                                     -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))}) {
      d = 1 + coefficient * d;
      d = 1 / (std::abs(d) < tiny ? tiny : d);
      c = 1 + coefficient / c;
      if (std::abs(c) < tiny) c = tiny;
      h *= d * c;
    }
    if (std::abs(d * c - 1) < eps) return h;
  }
  return h;  // 10,000 terms: far past convergence for the arguments used here
}

// The regularised incomplete beta function I_x(a, b).
double incomplete_beta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

}  // namespace

double student_t_cdf(double t, double dof) {
  if (!(dof > 0)) throw std::invalid_argument("student_t_cdf: degrees of freedom must be positive");
  if (std::isnan(t)) return std::numeric_limits<double>::quiet_NaN();
  if (std::isinf(t)) return t > 0 ? 1 : 0;
  const double tail = 0.5 * incomplete_beta(dof / 2, 0.5, dof / (dof + t * t));  // P(T > |t|)
  return t < 0 ? tail : 1 - tail;
}

TTest t_test_mean_below(const std::vector<double>& values, double target) {
  TTest r;
  r.n = static_cast<int>(values.size());
  if (r.n == 0) return r;
  r.mean = std::accumulate(values.begin(), values.end(), 0.0) / r.n;
  if (r.n < 2) return r;
  double squares = 0;
  for (double v : values) squares += (v - r.mean) * (v - r.mean);
  r.stddev = std::sqrt(squares / (r.n - 1));
  if (r.stddev == 0) return r;
  const double t = (r.mean - target) / (r.stddev / std::sqrt(static_cast<double>(r.n)));
  r.p_value = student_t_cdf(t, r.n - 1);
  return r;
}

}  // namespace muonrun
