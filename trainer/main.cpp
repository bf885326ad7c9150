// muonrun: the command-line tool. Each subcommand parses its options here and
// hands over to the library function that does the work.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <iostream>

#include "trainer/config.h"
#include "trainer/logging.h"

using namespace muonrun;

namespace {

struct ConfigOptions {
  std::vector<std::string> files;
  std::vector<std::string> overrides;
};

void add_config_options(CLI::App* cmd, ConfigOptions& options) {
  cmd->add_option("-c,--config", options.files, "YAML config file (repeatable; later wins)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--set", options.overrides, "override one key: --set optim.muon.lr=0.05")
      ->type_name("KEY=VALUE");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"muonrun: NanoGPT speedrun trainer (Muon + AdamW, data parallel)"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace | debug | info | warn | error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  ConfigOptions config_options;
  auto* config_cmd = app.add_subcommand("config", "print the effective config as YAML");
  add_config_options(config_cmd, config_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    init_console_logging(log_level);
    if (config_cmd->parsed()) {
      std::cout << to_yaml(load_config(config_options.files, config_options.overrides));
    }
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
