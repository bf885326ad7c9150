#include "optim/param_groups.h"

#include "trainer/base/strings.h"

namespace muonrun {
namespace {

bool is_embedding(const std::string& name) {
  return ends_with(name, "wte.weight") || name == "embed.weight" || name.rfind("value_embeds.", 0) == 0;
}

}  // namespace

ParamGroups group_parameters(const torch::nn::Module& model) {
  ParamGroups groups;
  for (const auto& item : model.named_parameters()) {
    NamedParam p{item.key(), item.value()};
    if (is_embedding(p.name)) groups.embeddings.push_back(p);
    else if (p.name == "lm_head.weight") groups.heads.push_back(p);
    else if (p.tensor.dim() >= 2) groups.matrices.push_back(p);
    else groups.scalars.push_back(p);
  }
  return groups;
}

}  // namespace muonrun
