// A build without CUDA has no CUDA graphs: train.cuda_graphs is refused at the
// first step with the reason (the graph itself: micro_step_graph.cpp).
#include "trainer/base/config_error.h"
#include "trainer/run/micro_step_graph.h"

namespace muonrun {

std::unique_ptr<MicroStepGraph> capture_micro_step(LanguageModelImpl&, const torch::Tensor&, const torch::Tensor&, double, int) {
  throw ConfigError("train.cuda_graphs: this muonrun was built without CUDA (MUONRUN_CUDA=OFF); "
                    "build with CUDA=1 launch/setup.sh, or set train.cuda_graphs: false");
}

}  // namespace muonrun
