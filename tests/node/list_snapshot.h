// The state machine the node tests use: the list of (index, data) a group
// applied, and its snapshot format (a varint index and a length-prefixed
// payload per entry). ListView streams one record per write, so a snapshot
// file is never built whole; read_list_snapshot reads the source in
// buf_bytes pieces, so chunk boundaries fall inside records.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "raft/node/node.h"
#include "runtime/base/bytes.h"

namespace nori::raft::testing {

using AppliedList = std::vector<std::pair<Index, std::string>>;

class ListView final : public SnapshotView {
 public:
  explicit ListView(AppliedList s) : s_(std::move(s)) {}
  base::Status write(snapshot::SnapshotSink& sink) override {
    for (const auto& [i, d] : s_) {
      std::string rec;
      base::ByteWriter w(rec);
      w.varint(i);
      w.length_prefixed(d);
      NORI_TRY(sink.write(rec));
    }
    return {};
  }

 private:
  AppliedList s_;
};

inline base::Result<AppliedList> read_list_snapshot(snapshot::SnapshotSource& src,
                                                    size_t buf_bytes = 1000) {
  std::string all;
  std::vector<char> buf(buf_bytes);
  while (true) {
    NORI_ASSIGN_OR_RETURN(size_t n, src.read(buf.data(), buf.size()));
    if (n == 0) break;
    all.append(buf.data(), n);
  }
  AppliedList s;
  base::ByteReader r(all);
  while (!r.empty()) {
    uint64_t i;
    std::string_view d;
    if (!r.varint(i) || !r.length_prefixed(d, 1 << 20)) {
      return base::Error(base::ErrorKind::kCorruption, "bad snapshot payload");
    }
    s.emplace_back(i, std::string(d));
  }
  return s;
}

}  // namespace nori::raft::testing
