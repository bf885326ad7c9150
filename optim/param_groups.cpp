#include "optim/param_groups.h"

#include "trainer/base/strings.h"

namespace muonrun {

ParamGroups group_parameters(const torch::nn::Module& model) {
  ParamGroups groups;
  for (const auto& item : model.named_parameters()) {
    NamedParam p{item.key(), item.value()};
    if (ends_with(p.name, "wte.weight")) groups.embeddings.push_back(p);
    else if (p.name == "lm_head.weight") groups.heads.push_back(p);
    else if (p.tensor.dim() == 2) groups.matrices.push_back(p);
    else groups.scalars.push_back(p);
  }
  return groups;
}

}  // namespace muonrun
