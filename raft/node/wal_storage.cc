#include "raft/node/wal_storage.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wal/format.h"

namespace nori::raft {

using base::ErrorKind;

void encode_payload(const Entry& e, std::string& out) {
  out.push_back(static_cast<char>(e.type));
  out.append(e.data);
}

namespace {
base::Status decode_into(std::string_view payload, Index index, Term term, Entry& e) {
  if (payload.empty() ||
      static_cast<uint8_t>(payload[0]) > static_cast<uint8_t>(EntryType::kConfig)) {
    return base::err(ErrorKind::kCorruption, "WAL entry {} has no valid type byte", index);
  }
  e.index = index;
  e.term = term;
  e.type = static_cast<EntryType>(payload[0]);
  e.data.assign(payload.substr(1));
  return {};
}
}  // namespace

SegmentReader::~SegmentReader() {
  for (auto& [seq, fd] : fds_)
    ::close(fd);
}

void SegmentReader::forget_below(uint64_t seq) {
  while (!fds_.empty() && fds_.begin()->first < seq) {
    ::close(fds_.begin()->second);
    fds_.erase(fds_.begin());
  }
}

base::Status SegmentReader::read(uint64_t seq, uint64_t offset, uint32_t len, std::string& out) {
  auto it = fds_.find(seq);
  if (it == fds_.end()) {
    const std::string path = dir_ + "/" + wal::segment_file_name(seq);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // reactor-ok: see wal_storage.h
    if (fd < 0) {
      return base::err(ErrorKind::kIo, "open {}: {}", path, std::strerror(errno));
    }
    it = fds_.emplace(seq, fd).first;
  }
  out.resize(len);
  size_t done = 0;
  while (done < len) {
    // Old entries only, bounded per call; why not io_uring: wal_storage.h.
    ssize_t n = ::pread(it->second, out.data() + done, len - done,  // reactor-ok: see header
                        static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return base::err(ErrorKind::kIo, "read of segment {} at {}: {}", seq, offset + done,
                       n == 0 ? "end of file" : std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  ++disk_reads_;
  return {};
}

HardState WalStorage::hard_state() const {
  const wal::GroupLog* g = wal_.group(group_);
  if (g == nullptr) return {};
  return HardState{g->hard_state().term, g->hard_state().vote, g->hard_state().commit};
}

Index WalStorage::first_index() const {
  const wal::GroupLog* g = wal_.group(group_);
  return g == nullptr ? 1 : g->first_index();
}

Index WalStorage::last_index() const {
  const wal::GroupLog* g = wal_.group(group_);
  return g == nullptr ? 0 : g->last_index();
}

base::Result<Term> WalStorage::term(Index index) const {
  if (index == 0) return Term{0};
  const wal::GroupLog* g = wal_.group(group_);
  if (g != nullptr) {
    if (auto t = g->term(index)) return Term{*t};
  }
  return base::err(ErrorKind::kNotFound, "group {} has no entry {} in the WAL", group_, index);
}

base::Status WalStorage::entries(Index lo, Index hi, uint64_t bytes_max,
                                 std::vector<Entry>& out) const {
  const wal::GroupLog* g = wal_.group(group_);
  if (g == nullptr || lo < g->first_index()) {
    return base::err(ErrorKind::kNotFound, "group {} entry {} was compacted", group_, lo);
  }
  uint64_t bytes = 0;
  std::string scratch;
  for (Index i = lo; i < hi; ++i) {
    const wal::EntryLoc* loc = g->entry(i);
    if (loc == nullptr) {
      return base::err(ErrorKind::kNotFound, "group {} has no entry {} in the WAL", group_, i);
    }
    Entry e;
    if (auto cached = wal_.engine().cached_payload(*loc)) {
      NORI_TRY(decode_into(*cached, i, loc->term, e));
    } else {
      NORI_TRY(reader_.read(loc->seq, loc->offset, loc->len, scratch));
      NORI_TRY(decode_into(scratch, i, loc->term, e));
    }
    const uint64_t b = entry_bytes(e);
    if (i > lo && bytes + b > bytes_max) break;
    bytes += b;
    out.push_back(std::move(e));
  }
  return {};
}

}  // namespace nori::raft
