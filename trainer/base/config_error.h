// The error of bad configuration, thrown by the config loader and by the
// components that check combinations of keys; `muonrun` exits with code 1
// (trainer/base/exit_codes.h) and its message.
#pragma once

#include <stdexcept>

namespace muonrun {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace muonrun
