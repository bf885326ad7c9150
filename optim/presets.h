// Named optimizers of the Muon-variants talk (M. Crawshaw, with C. Modi,
// M. Liu, R. M. Gower, "An Exploration of Non-Euclidean Gradient Descent: Muon
// and its Many Variants", 2026; its table of 18 variants) as the long-hand
// settings they stand for:
//   muon_adam  constrained, max, ada_inf  the speedrun's Muon + Adam ("Muon")
//   scion      constrained, max, sign     with shape_factor spectral: Scion's
//                                         LMO sqrt(d_out/d_in) polar (Pethick
//                                         et al. 2025, "Training Deep Learning
//                                         Models with Norm-Constrained LMOs",
//                                         arXiv:2502.07529)
//   muonmax    regularized, hybrid, ada_2
//   polargrad  regularized, l2, ada_2
// Add optim.momo.enabled for the "-Momo" rows of the talk.
#pragma once

#include "optim/optim_config.h"
#include "trainer/base/config_error.h"

namespace muonrun {

// `optim` with the preset's keys set (unchanged for preset "none"). Throws
// ConfigError when one of those keys was also set long-hand to a value that
// is neither its default nor the preset's.
OptimConfig resolve_preset(const OptimConfig& optim);

}  // namespace muonrun
