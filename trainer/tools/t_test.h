// The one-sided one-sample t-test a speedrun record claim needs: the
// speedrun's rules ask for enough runs to show, at p < 0.01, that the mean
// final validation loss is at most 3.28 (KellerJordan/modded-nanogpt,
// README: "Rules"). Its p-value is scipy.stats.ttest_1samp(losses, target,
// alternative="less").pvalue: with mean m, sample standard deviation s and
// n runs, t = (m - target) / (s / sqrt(n)) and p = P(T <= t) for Student's t
// with n - 1 degrees of freedom.
#pragma once

#include <optional>
#include <vector>

namespace muonrun {

// P(T <= t) for Student's t with `dof` > 0 degrees of freedom, through the
// regularised incomplete beta function: P(|T| > |t|) = I_{dof/(dof+t^2)}(dof/2, 1/2).
double student_t_cdf(double t, double dof);

struct TTest {
  int n = 0;
  double mean = 0, stddev = 0;  // sample standard deviation (n - 1)
  // P(T <= t) under "the mean is `target`": small when the mean is below it.
  // Unset for n < 2, and when every value is the same (stddev 0: t is +-inf
  // or undefined; the p-value is then 0 below the target and 1 at or above it).
  std::optional<double> p_value;
};

TTest t_test_mean_below(const std::vector<double>& values, double target);

}  // namespace muonrun
