// glob(3), sorted.
#include "trainer/data/shard_glob.h"

#include <glob.h>

#include <algorithm>
#include <stdexcept>

namespace muonrun {

std::vector<std::string> glob_shards(const std::string& pattern) {
  glob_t g{};
  int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
  std::vector<std::string> files(g.gl_pathv, g.gl_pathv + g.gl_pathc);
  ::globfree(&g);
  if (rc == GLOB_NOMATCH || (rc == 0 && files.empty()))
    throw std::runtime_error("data: no files match '" + pattern + "'");
  if (rc != 0) throw std::runtime_error("data: cannot list the files matching '" + pattern + "'");
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace muonrun
