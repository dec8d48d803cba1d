#include "kv/snapshot.h"

#include <istream>
#include <ostream>
#include <streambuf>
#include <vector>

namespace nori::kv {

namespace {

constexpr size_t kStreamBufferBytes = 64 * 1024;

// An output streambuf that hands full buffers to a SnapshotSink and keeps the
// first error (the stream then fails, and the error is returned as is).
class SinkBuf final : public std::streambuf {
 public:
  explicit SinkBuf(raft::snapshot::SnapshotSink& sink) : sink_(sink), buf_(kStreamBufferBytes) {
    setp(buf_.data(), buf_.data() + buf_.size());
  }
  base::Status status() const { return status_; }
  int flush_all() { return drain() ? 0 : -1; }

 protected:
  int_type overflow(int_type ch) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(ch, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(ch);
      pbump(1);
    }
    return traits_type::not_eof(ch);
  }
  int sync() override { return flush_all(); }

 private:
  bool drain() {
    if (!status_.ok()) return false;
    const size_t n = static_cast<size_t>(pptr() - pbase());
    if (n > 0) {
      base::Status st = sink_.write(std::string_view(pbase(), n));
      if (!st.ok()) {
        status_ = std::move(st);
        return false;
      }
    }
    setp(buf_.data(), buf_.data() + buf_.size());
    return true;
  }
  raft::snapshot::SnapshotSink& sink_;
  std::vector<char> buf_;
  base::Status status_;
};

// An input streambuf over a SnapshotSource; a read error ends the stream and
// is kept so that it is reported instead of "truncated".
class SourceBuf final : public std::streambuf {
 public:
  explicit SourceBuf(raft::snapshot::SnapshotSource& source)
      : source_(source), buf_(kStreamBufferBytes) {
    setg(buf_.data(), buf_.data(), buf_.data());
  }
  base::Status status() const { return status_; }

 protected:
  int_type underflow() override {
    if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
    if (!status_.ok()) return traits_type::eof();
    base::Result<size_t> n = source_.read(buf_.data(), buf_.size());
    if (!n.ok()) {
      status_ = std::move(n).error();
      return traits_type::eof();
    }
    if (*n == 0) return traits_type::eof();
    setg(buf_.data(), buf_.data(), buf_.data() + *n);
    return traits_type::to_int_type(*gptr());
  }

 private:
  raft::snapshot::SnapshotSource& source_;
  std::vector<char> buf_;
  base::Status status_;
};

class StoreView final : public raft::SnapshotView {
 public:
  explicit StoreView(std::unique_ptr<Store> copy) : copy_(std::move(copy)) {}
  base::Status write(raft::snapshot::SnapshotSink& sink) override {
    SinkBuf buf(sink);
    std::ostream out(&buf);
    base::Status st = copy_->write_snapshot(out);
    const bool flushed = buf.flush_all() == 0;
    if (!buf.status().ok()) return buf.status();  // the sink's own error first
    if (!st.ok()) return st;
    if (!flushed) return base::Error(base::ErrorKind::kIo, "snapshot: flush failed");
    return {};
  }

 private:
  std::unique_ptr<Store> copy_;
};

}  // namespace

std::unique_ptr<raft::SnapshotView> capture_snapshot(const Store& store) {
  return std::make_unique<StoreView>(store.clone());
}

base::Status restore_snapshot(Store& store, raft::snapshot::SnapshotSource& source) {
  SourceBuf buf(source);
  std::istream in(&buf);
  base::Status st = store.restore(in);
  if (!buf.status().ok()) return buf.status();
  return st;
}

}  // namespace nori::kv
