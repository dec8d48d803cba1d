// reactor-ok-file: a file of a few lines, written on the rare CLUSTER ADDNODE / NORI.PEER and read
// at start (kv/peer_book.h)
#include "kv/peer_book.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace nori::kv {

namespace {
base::Error io_error(const std::string& what, const std::string& path) {
  return base::Error(base::ErrorKind::kIo,
                     fmt::format("{} {}: {}", what, path, std::strerror(errno)));
}
}  // namespace

base::Result<std::map<raft::NodeId, PeerClientAddress>> load_peer_book(const std::string& path) {
  std::map<raft::NodeId, PeerClientAddress> out;
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return out;
  std::ifstream in(path);
  if (!in) return io_error("open", path);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    std::istringstream ls(line);
    raft::NodeId id = 0;
    std::string host;
    unsigned port = 0;
    std::string rest;
    if (!(ls >> id >> host >> port) || (ls >> rest) || id == raft::kNoNode || port == 0 ||
        port > 65535) {
      return base::Error(base::ErrorKind::kCorruption,
                         fmt::format("{} line {}: want 'id host port'", path, n));
    }
    out[id] = PeerClientAddress{host, static_cast<uint16_t>(port)};
  }
  return out;
}

base::Status save_peer_book(const std::string& path,
                            const std::map<raft::NodeId, PeerClientAddress>& peers) {
  std::string body;
  for (const auto& [id, a] : peers)
    body += fmt::format("{} {} {}\n", id, a.host, a.port);
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("create", tmp);
  const bool ok = ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size()) &&
                  ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return io_error("write", tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return io_error("rename", tmp);
  const std::string dir =
      path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return io_error("open directory of", path);
  const bool synced = ::fsync(dfd) == 0;
  ::close(dfd);
  if (!synced) return io_error("fsync directory of", path);
  return {};
}

}  // namespace nori::kv
