#include "trainer/tools/plots.h"

#include <spdlog/fmt/fmt.h>

#include <cstdlib>
#include <filesystem>

#include "trainer/base/atomic_file.h"
#include "trainer/tools/sweep.h"

namespace muonrun {
namespace fs = std::filesystem;
namespace {

std::string gnuplot_text(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '"' ? std::string("\\\"") : std::string(1, c);
  return out;
}

// One PNG: a line per series, from the data files written beside the script.
std::string plot_script(const Plot& plot, const std::vector<std::string>& data_files) {
  std::string script = fmt::format(
      "set terminal pngcairo noenhanced size 1200,700\nset output \"{}\"\nset title \"{}\"\n"
      "set xlabel \"{}\"\nset ylabel \"{}\"\nset grid\nset key outside right\n{}plot ",
      gnuplot_text(plot.png), gnuplot_text(plot.title), gnuplot_text(plot.xlabel), gnuplot_text(plot.ylabel),
      plot.log_x ? "set logscale x\n" : "");
  for (size_t i = 0; i < plot.series.size(); ++i)
    script += fmt::format("{}\"{}\" using 1:2 with linespoints pointsize 0.4 lc {} dt {} title \"{}\"",
                          i ? ", \\\n     " : "", gnuplot_text(data_files[i]), i % 8 + 1, i / 8 + 1,
                          gnuplot_text(plot.series[i].title));
  return script + "\n";
}

void write_points(const fs::path& file, const Points& points) {
  std::string text;
  for (const auto& [x, y] : points) text += fmt::format("{} {}\n", x, y);
  write_file_atomically(file.string(), text);
}

}  // namespace

void write_plots(const std::string& dir, const std::string& name, const std::vector<Plot>& plots) {
  fs::create_directories(fs::path(dir) / "data");
  std::string script;
  for (size_t p = 0; p < plots.size(); ++p) {
    if (plots[p].series.empty()) continue;
    std::vector<std::string> data_files;
    for (size_t s = 0; s < plots[p].series.size(); ++s) {
      data_files.push_back(fmt::format("data/{}_p{}_s{:02d}.dat", name, p, s));
      write_points(fs::path(dir) / data_files.back(), plots[p].series[s].points);
    }
    script += plot_script(plots[p], data_files);
  }
  if (script.empty()) return;
  const std::string script_file = name + ".gp";
  write_file_atomically((fs::path(dir) / script_file).string(), script);
  const std::string command = "cd " + shell_quote(dir) + " && gnuplot " + shell_quote(script_file);
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0)
    throw PlotError("gnuplot not found: the PNGs are not rendered (install gnuplot-nox, as launch/setup.sh "
                    "does, then run: " + command + ")");
  if (std::system(command.c_str()) != 0) throw PlotError("gnuplot failed: " + command);
}

Points ema_smoothed(const Points& points, double decay) {
  Points out;
  double ema = 0, weight = 0;
  for (const auto& [x, y] : points) {
    ema = decay * ema + (1 - decay) * y;
    weight = decay * weight + (1 - decay);
    out.emplace_back(x, ema / weight);
  }
  return out;
}

}  // namespace muonrun
