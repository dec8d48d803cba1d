// reactor-ok-file: load() runs before the core starts (alien thread); the file is written by
// snapshot worker jobs, never on the reactor
#include "raft/node/removed_groups.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

namespace nori::raft {

namespace {
constexpr const char* kMagic = "nori-removed-groups 1";
}  // namespace

base::Status RemovedGroups::load() {
  const std::string path = dir_ + "/" + name_;
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return {};
    return base::err(base::ErrorKind::kIo, "open {}: {}", path, std::strerror(errno));
  }
  std::string line;
  if (!std::getline(in, line) || line != kMagic) {
    return base::err(base::ErrorKind::kCorruption, "{} is not a removed-groups file", path);
  }
  std::set<GroupId> ids;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    size_t used = 0;
    unsigned long long v = 0;
    try {
      v = std::stoull(line, &used);
    } catch (...) {
      used = 0;
    }
    if (used != line.size() || line[0] == '-') {
      return base::err(base::ErrorKind::kCorruption, "{}: bad line '{}'", path, line);
    }
    ids.insert(v);
  }
  if (in.bad()) return base::err(base::ErrorKind::kIo, "read {}", path);
  ids_ = std::move(ids);
  return {};
}

void RemovedGroups::set(GroupId g, bool removed) {
  if (removed) {
    ids_.insert(g);
  } else {
    ids_.erase(g);
  }
}

std::string RemovedGroups::text() const {
  std::string out = fmt::format("{}\n", kMagic);
  for (GroupId g : ids_)
    out += fmt::format("{}\n", g);
  return out;
}

}  // namespace nori::raft
