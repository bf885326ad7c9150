#include "trainer/io/checkpoint.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>

#include "trainer/io/safetensors.h"
#include "trainer/base/atomic_file.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

constexpr const char* kMarker = "COMPLETE";

// At least six digits (step_000040), more past step 999,999 (step_1234567).
std::string step_name(int64_t step) { return fmt::format("step_{:06d}", step); }

// The step of a checkpoint directory named step_<digits> (any number of
// them, as step_name() writes past 999,999), or nothing for other names:
// step_<n>.tmp being assembled, or a step no int64 holds.
std::optional<int64_t> step_of(const std::string& name) {
  constexpr std::string_view prefix = "step_";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    const char c = name[i];
    if (c < '0' || c > '9') return std::nullopt;
    if (step > (std::numeric_limits<int64_t>::max() - (c - '0')) / 10) return std::nullopt;
    step = step * 10 + (c - '0');
  }
  return step;
}

// Checkpoint directories under run_dir/checkpoints with their step, oldest
// first (by step, not by name: step_999999 comes before step_1000000).
std::vector<std::pair<int64_t, fs::path>> complete_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return found;
  for (const auto& entry : fs::directory_iterator(root)) {
    const auto step = step_of(entry.path().filename().string());
    if (!step || !entry.is_directory() || !fs::exists(entry.path() / kMarker)) continue;
    found.emplace_back(*step, entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

int64_t metadata_int(const SafetensorsFile& file, const std::string& path, const std::string& key) {
  auto it = file.metadata.find(key);
  if (it == file.metadata.end()) throw std::runtime_error(path + ": metadata has no '" + key + "'");
  try {
    size_t used = 0;
    int64_t v = std::stoll(it->second, &used);
    if (used != it->second.size()) throw std::invalid_argument(it->second);
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": metadata '" + key + "' is not an integer: " + it->second);
  }
}

double metadata_double(const SafetensorsFile& file, const std::string& path, const std::string& key) {
  auto it = file.metadata.find(key);
  if (it == file.metadata.end()) throw std::runtime_error(path + ": metadata has no '" + key + "'");
  try {
    return std::stod(it->second);
  } catch (const std::exception&) {
    throw std::runtime_error(path + ": metadata '" + key + "' is not a number: " + it->second);
  }
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, const Config& config, torch::nn::Module& model,
                            const Optimizer& optimizer, const TrainerState& state, Communicator* comm) {
  const int rank = comm ? comm->rank() : 0;
  const int world = comm ? comm->size() : 1;
  auto barrier = [&] {
    if (comm) comm->barrier();
  };
  const fs::path root = fs::path(run_dir) / "checkpoints";
  const fs::path final_dir = root / step_name(state.step);
  const fs::path tmp_dir = root / (step_name(state.step) + ".tmp");
  if (rank == 0) {
    fs::create_directories(root);
    fs::remove_all(tmp_dir);  // leftovers of an interrupted write
    fs::create_directories(tmp_dir);
  }
  barrier();

  auto rank_tensors = optimizer.state();
  rank_tensors.emplace_back("rng.cpu", at::detail::getDefaultCPUGenerator().get_state());
  save_safetensors((tmp_dir / ("rank" + std::to_string(rank) + ".safetensors")).string(), rank_tensors,
                   {{"step", std::to_string(state.step)},
                    {"loader.shard", std::to_string(state.loader.shard)},
                    {"loader.document", std::to_string(state.loader.document)},
                    {"loader.offset", std::to_string(state.loader.offset)},
                    {"loader.epoch", std::to_string(state.loader.epoch)},
                    {"train_time_ms", fmt::format("{}", state.train_time_ms)},
                    {"timed_steps", std::to_string(state.timed_steps)},
                    {"train_loss", fmt::format("{}", state.last_train_loss)},
                    {"lr_scale", fmt::format("{}", state.lr_scale)},
                    {"rollbacks", std::to_string(state.rollbacks)},
                    {"world_size", std::to_string(world)}});
  if (rank == 0) {
    std::vector<std::pair<std::string, torch::Tensor>> weights;
    for (const auto& p : model.named_parameters()) weights.emplace_back(p.key(), p.value());
    save_safetensors((tmp_dir / "model.safetensors").string(), weights,
                     {{"format", "pt"}, {"step", std::to_string(state.step)}});
    write_file_atomically((tmp_dir / "config.yaml").string(), to_yaml(config));
  }
  barrier();  // every rank file is on disk before the marker says so
  if (rank == 0) {
    write_file_atomically((tmp_dir / kMarker).string(), std::to_string(state.step) + "\n");
    fs::remove_all(final_dir);  // a checkpoint of the same step from an earlier attempt
    fs::rename(tmp_dir, final_dir);
    sync_directory(root.string());
    spdlog::info("checkpoint: wrote {}", final_dir.string());
    auto all = complete_checkpoints(run_dir);
    const auto& keep = config.checkpoint;
    for (size_t i = 0; i + static_cast<size_t>(keep.keep_last) < all.size(); ++i)
      if (keep.keep_every == 0 || all[i].first % keep.keep_every != 0) fs::remove_all(all[i].second);
  }
  barrier();
  return final_dir.string();
}

std::optional<std::string> find_latest_checkpoint(const std::string& run_dir) {
  auto all = complete_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second.string();
}

Config checkpoint_config(const std::string& checkpoint_dir) {
  const std::string path = (fs::path(checkpoint_dir) / "config.yaml").string();
  return load_config({path}, {});
}

void load_model_weights(const std::string& checkpoint_dir, torch::nn::Module& model) {
  const std::string path = (fs::path(checkpoint_dir) / "model.safetensors").string();
  auto weights = load_safetensors(path);
  torch::NoGradGuard no_grad;
  for (auto& p : model.named_parameters()) {
    auto it = weights.tensors.find(p.key());
    if (it == weights.tensors.end()) throw std::runtime_error(path + ": no tensor " + p.key());
    if (it->second.sizes() != p.value().sizes() || it->second.scalar_type() != torch::kFloat)
      throw std::runtime_error(path + ": tensor " + p.key() + " is " +
                               c10::toString(it->second.scalar_type()) + c10::str(it->second.sizes()) +
                               ", the model needs Float" + c10::str(p.value().sizes()));
    p.value().copy_(it->second);
  }
}

TrainerState load_checkpoint(const std::string& checkpoint_dir, torch::nn::Module& model, Optimizer& optimizer,
                             int rank) {
  const fs::path dir(checkpoint_dir);
  if (!fs::exists(dir / kMarker))
    throw std::runtime_error(checkpoint_dir + ": not a complete checkpoint (no " + kMarker + " file)");
  load_model_weights(checkpoint_dir, model);

  // Rank 0's file holds the shared state; the union of all rank files holds
  // every optimizer tensor (owners' Muon momentum is spread over them).
  const std::string main_path = (dir / "rank0.safetensors").string();
  auto main = load_safetensors(main_path);
  const int64_t saved_world = metadata_int(main, main_path, "world_size");
  std::map<std::string, torch::Tensor> tensors = main.tensors;
  torch::Tensor rng = tensors.count("rng.cpu") ? tensors.at("rng.cpu") : torch::Tensor();
  for (int64_t r = 1; r < saved_world; ++r) {
    const std::string path = (dir / ("rank" + std::to_string(r) + ".safetensors")).string();
    auto file = load_safetensors(path);
    for (auto& [name, t] : file.tensors) {
      if (name == "rng.cpu") {
        if (r == rank) rng = t;
      } else {
        tensors.emplace(name, t);
      }
    }
  }
  try {
    optimizer.load_state(tensors);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(checkpoint_dir + ": " + e.what());
  }
  if (!rng.defined()) throw std::runtime_error(main_path + ": no tensor rng.cpu");
  auto generator = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
  generator.set_state(rng);

  TrainerState state;
  state.step = metadata_int(main, main_path, "step");
  state.loader.shard = metadata_int(main, main_path, "loader.shard");
  // Checkpoints from before the document loader have no loader.document: 0.
  state.loader.document = main.metadata.count("loader.document") ? metadata_int(main, main_path, "loader.document") : 0;
  state.loader.offset = metadata_int(main, main_path, "loader.offset");
  state.loader.epoch = metadata_int(main, main_path, "loader.epoch");
  state.train_time_ms = metadata_double(main, main_path, "train_time_ms");
  state.timed_steps = metadata_int(main, main_path, "timed_steps");
  state.last_train_loss = metadata_double(main, main_path, "train_loss");
  state.lr_scale = metadata_double(main, main_path, "lr_scale");
  state.rollbacks = metadata_int(main, main_path, "rollbacks");
  return state;
}

std::vector<std::string> config_differences(const Config& saved, const Config& current,
                                            const std::vector<std::string>& prefixes) {
  auto a = flatten(saved), b = flatten(current);
  std::vector<std::string> out;
  for (size_t i = 0; i < a.size(); ++i) {
    bool watched = std::any_of(prefixes.begin(), prefixes.end(),
                               [&](const std::string& p) { return a[i].first.rfind(p, 0) == 0; });
    if (watched && a[i].second != b[i].second)
      out.push_back(a[i].first + ": " + a[i].second + " -> " + b[i].second);
  }
  return out;
}

}  // namespace muonrun
