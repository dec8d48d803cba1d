#include "raft/snapshot/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

namespace nori::raft::snapshot {

namespace {

constexpr uint64_t kMagic = 0x50414e5349524f4eull;  // "NORISNAP"
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMetaBytesMax = 1 << 20;
constexpr size_t kHeaderFixed = 16;  // magic + version + meta_len
constexpr size_t kTrailer = 8;
constexpr size_t kIoBuf = 64 << 10;

base::Error io_error(const char* what, const std::string& path) {
  return base::err(base::ErrorKind::kIo, "snapshot store: {} {}: {}", what, path,
                   std::strerror(errno));
}

base::Status write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC) return base::err(base::ErrorKind::kNoSpace, "snapshot: disk full");
      return io_error("write", path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}

base::Result<size_t> pread_some(int fd, char* out, size_t n, uint64_t off,
                                const std::string& path) {
  for (;;) {
    ssize_t r = ::pread(fd, out, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return io_error("read", path);
    return static_cast<size_t>(r);
  }
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

std::string encode_header(const SnapshotMeta& meta) {
  std::string m;
  base::ByteWriter mw(m);
  mw.varint(meta.index);
  mw.varint(meta.term);
  mw.length_prefixed(meta.membership.encode());
  std::string out;
  base::ByteWriter w(out);
  w.u64(kMagic);
  w.u32(kVersion);
  w.u32(static_cast<uint32_t>(m.size()));
  w.bytes(m);
  return out;
}

base::Result<SnapshotFile> verify_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return io_error("open", path);
  struct stat st;
  if (::fstat(f.fd, &st) != 0) return io_error("stat", path);
  uint64_t size = static_cast<uint64_t>(st.st_size);
  auto corrupt = [&](const char* what) {
    return base::err(base::ErrorKind::kCorruption, "snapshot {}: {}", path, what);
  };
  if (size < kHeaderFixed + kTrailer) return corrupt("too short");
  // Whole-file digest, streamed.
  XXH3_state_t* st3 = XXH3_createState();
  NORI_ASSERT(st3 != nullptr);
  XXH3_64bits_reset(st3);
  std::vector<char> buf(kIoBuf);
  uint64_t off = 0, body = size - kTrailer;
  std::string head;
  while (off < body) {
    auto n = pread_some(f.fd, buf.data(), std::min<uint64_t>(buf.size(), body - off), off, path);
    if (!n.ok() || *n == 0) {
      XXH3_freeState(st3);
      return n.ok() ? corrupt("short read") : n.error();
    }
    XXH3_64bits_update(st3, buf.data(), *n);
    if (head.size() < kHeaderFixed + kMetaBytesMax) head.append(buf.data(), *n);
    off += *n;
  }
  uint64_t digest = XXH3_64bits_digest(st3);
  XXH3_freeState(st3);
  char tb[kTrailer];
  auto tn = pread_some(f.fd, tb, kTrailer, body, path);
  if (!tn.ok()) return tn.error();
  uint64_t stored;
  std::memcpy(&stored, tb, sizeof stored);
  if (*tn != kTrailer || stored != digest) return corrupt("digest mismatch");
  base::ByteReader r(head);
  uint64_t magic;
  uint32_t version, meta_len;
  if (!r.u64(magic) || magic != kMagic || !r.u32(version) || version != kVersion ||
      !r.u32(meta_len) || meta_len > kMetaBytesMax) {
    return corrupt("bad header");
  }
  std::string_view meta_bytes, mem;
  if (!r.bytes(meta_len, meta_bytes)) return corrupt("truncated header");
  base::ByteReader mr(meta_bytes);
  SnapshotFile out;
  if (!mr.varint(out.meta.index) || !mr.varint(out.meta.term) ||
      !mr.length_prefixed(mem, kMetaBytesMax) || !mr.empty()) {
    return corrupt("bad metadata");
  }
  auto m = Membership::decode(mem);
  if (!m.ok()) return corrupt("bad membership");
  out.meta.membership = std::move(*m);
  out.path = path;
  out.size = size;
  out.digest = digest;
  return out;
}

// --- store -----------------------------------------------------------------------------

base::Result<std::unique_ptr<SnapshotStore>> SnapshotStore::open(std::string dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return io_error("mkdir", dir);
  return std::unique_ptr<SnapshotStore>(new SnapshotStore(std::move(dir)));
}

SnapshotStore::~SnapshotStore() = default;

std::string SnapshotStore::path_for(const SnapshotMeta& meta) const {
  return fmt::format("{}/snap-{:020}-{:020}.snap", dir_, meta.index, meta.term);
}

base::Status SnapshotStore::sync_dir() const {
  Fd d{::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0) return io_error("open dir", dir_);
  if (::fsync(d.fd) != 0) return io_error("fsync dir", dir_);
  return {};
}

void SnapshotStore::unpin(const SnapshotFile& f) {
  auto it = pins_.find(f.path);
  NORI_ASSERT(it != pins_.end(), "unpin of an unpinned snapshot {}", f.path);
  if (--it->second == 0) pins_.erase(it);
}

base::Result<SnapshotFile> SnapshotStore::recover() {
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return io_error("opendir", dir_);
  std::vector<std::string> tmps, snaps;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    auto ends = [&](std::string_view s) {
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (ends(".tmp")) tmps.push_back(dir_ + "/" + name);
    if (ends(".snap")) snaps.push_back(dir_ + "/" + name);
  }
  ::closedir(d);
  bool removed = false;
  for (const std::string& p : tmps) {
    // A write or receive a crash interrupted.
    if (!pinned(p) && ::unlink(p.c_str()) == 0) removed = true;
  }
  SnapshotFile best;
  std::vector<SnapshotFile> valid;
  for (const std::string& p : snaps) {
    auto f = verify_file(p);
    if (!f.ok()) {
      if (f.error().kind() == base::ErrorKind::kCorruption && !pinned(p) &&
          ::unlink(p.c_str()) == 0) {
        removed = true;
      }
      continue;
    }
    valid.push_back(*f);
    if (f->meta.index > best.meta.index) best = *f;
  }
  for (const SnapshotFile& f : valid) {
    if (f.path != best.path && !pinned(f.path) && ::unlink(f.path.c_str()) == 0) removed = true;
  }
  if (removed) NORI_TRY(sync_dir());
  return best;
}

base::Result<std::unique_ptr<SnapshotWriter>> SnapshotStore::begin(const SnapshotMeta& meta) {
  std::unique_ptr<SnapshotWriter> w(new SnapshotWriter(*this, meta, path_for(meta)));
  w->fd_ = ::open(w->tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd_ < 0) return io_error("create", w->tmp_path_);
  NORI_TRY(w->write_raw(encode_header(meta)));
  return w;
}

base::Result<std::unique_ptr<SnapshotReceiver>> SnapshotStore::begin_receive(
    const SnapshotMeta& meta) {
  std::string tmp = path_for(meta) + ".recv.tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("create", tmp);
  return std::unique_ptr<SnapshotReceiver>(new SnapshotReceiver(*this, std::move(tmp), fd));
}

base::Result<std::string> SnapshotStore::read_file_range(const SnapshotFile& f, uint64_t offset,
                                                         size_t n) const {
  if (offset > f.size) return base::err(base::ErrorKind::kInvalidArgument, "offset past the file");
  Fd fd{::open(f.path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) return io_error("open", f.path);
  std::string out(std::min<uint64_t>(n, f.size - offset), '\0');
  size_t got = 0;
  while (got < out.size()) {
    NORI_ASSIGN_OR_RETURN(
        size_t r, pread_some(fd.fd, out.data() + got, out.size() - got, offset + got, f.path));
    if (r == 0) return base::err(base::ErrorKind::kCorruption, "snapshot {} shrank", f.path);
    got += r;
  }
  return out;
}

namespace {
class PayloadSource final : public SnapshotSource {
 public:
  PayloadSource(int fd, uint64_t off, uint64_t end, std::string path)
      : fd_(fd), off_(off), end_(end), path_(std::move(path)) {}
  ~PayloadSource() override { ::close(fd_); }
  base::Result<size_t> read(char* out, size_t n) override {
    if (off_ >= end_) return size_t{0};
    NORI_ASSIGN_OR_RETURN(size_t r,
                          pread_some(fd_, out, std::min<uint64_t>(n, end_ - off_), off_, path_));
    if (r == 0) return base::err(base::ErrorKind::kCorruption, "snapshot {} shrank", path_);
    off_ += r;
    return r;
  }

 private:
  int fd_;
  uint64_t off_, end_;
  std::string path_;
};
}  // namespace

base::Result<std::unique_ptr<SnapshotSource>> SnapshotStore::open_payload(
    const SnapshotFile& f) const {
  NORI_ASSIGN_OR_RETURN(SnapshotFile v, verify_file(f.path));
  uint64_t payload = encode_header(v.meta).size();
  int fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("open", f.path);
  return std::unique_ptr<SnapshotSource>(new PayloadSource(fd, payload, v.size - kTrailer, f.path));
}

// --- writer ----------------------------------------------------------------------------

SnapshotWriter::SnapshotWriter(SnapshotStore& store, SnapshotMeta meta, std::string final_path)
    : store_(store),
      meta_(std::move(meta)),
      final_path_(std::move(final_path)),
      tmp_path_(final_path_ + ".tmp") {
  auto* st = XXH3_createState();
  NORI_ASSERT(st != nullptr);
  XXH3_64bits_reset(st);
  hash_ = st;
}

SnapshotWriter::~SnapshotWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
  XXH3_freeState(static_cast<XXH3_state_t*>(hash_));
}

base::Status SnapshotWriter::write_raw(std::string_view bytes) {
  NORI_TRY(write_all(fd_, bytes.data(), bytes.size(), tmp_path_));
  XXH3_64bits_update(static_cast<XXH3_state_t*>(hash_), bytes.data(), bytes.size());
  size_ += bytes.size();
  return {};
}

base::Status SnapshotWriter::write(std::string_view bytes) {
  NORI_ASSERT(!committed_ && fd_ >= 0, "write after commit");
  return write_raw(bytes);
}

base::Result<SnapshotFile> SnapshotWriter::commit() {
  NORI_ASSERT(!committed_ && fd_ >= 0, "commit twice");
  uint64_t digest = XXH3_64bits_digest(static_cast<XXH3_state_t*>(hash_));
  NORI_TRY(write_all(fd_, reinterpret_cast<const char*>(&digest), sizeof digest, tmp_path_));
  // Durable before visible: data, then the name, then the directory entry.
  if (::fdatasync(fd_) != 0) return io_error("fdatasync", tmp_path_);
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) return io_error("rename", tmp_path_);
  committed_ = true;
  NORI_TRY(store_.sync_dir());
  return SnapshotFile{meta_, final_path_, size_ + sizeof digest, digest};
}

// --- receiver --------------------------------------------------------------------------

SnapshotReceiver::SnapshotReceiver(SnapshotStore& store, std::string tmp_path, int fd)
    : store_(store), tmp_path_(std::move(tmp_path)), fd_(fd) {}

SnapshotReceiver::~SnapshotReceiver() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_) ::unlink(tmp_path_.c_str());
}

base::Status SnapshotReceiver::write_chunk(uint64_t offset, std::string_view data) {
  if (done_ || fd_ < 0) return base::err(base::ErrorKind::kInvalidArgument, "receive finished");
  if (offset != size_) {
    return base::err(base::ErrorKind::kInvalidArgument, "chunk at {} after {} bytes", offset,
                     size_);
  }
  NORI_TRY(write_all(fd_, data.data(), data.size(), tmp_path_));
  size_ += data.size();
  return {};
}

base::Result<SnapshotFile> SnapshotReceiver::finish(const SnapshotMeta& expected, uint64_t digest) {
  if (done_ || fd_ < 0) return base::err(base::ErrorKind::kInvalidArgument, "receive finished");
  if (::fdatasync(fd_) != 0) return io_error("fdatasync", tmp_path_);
  ::close(fd_);
  fd_ = -1;
  NORI_ASSIGN_OR_RETURN(SnapshotFile f, verify_file(tmp_path_));
  if (f.digest != digest || f.meta.index != expected.index || f.meta.term != expected.term ||
      !(f.meta.membership == expected.membership)) {
    return base::err(base::ErrorKind::kCorruption,
                     "received snapshot is not the one announced ({}/{} vs {}/{})", f.meta.index,
                     f.meta.term, expected.index, expected.term);
  }
  std::string final_path = store_.path_for(f.meta);
  if (::rename(tmp_path_.c_str(), final_path.c_str()) != 0) return io_error("rename", tmp_path_);
  done_ = true;
  NORI_TRY(store_.sync_dir());
  f.path = final_path;
  return f;
}

}  // namespace nori::raft::snapshot
