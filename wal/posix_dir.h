// Blocking POSIX helpers for a WAL directory: recovery's SegmentSource over
// real files, directory listing and directory fsync.
//
// Blocking calls: used when a log is opened (before it accepts appends), by
// nori-wal-dump, and by tests; never on the append path.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/base/result.h"
#include "wal/recovery.h"

namespace nori::wal {

class PosixSegmentSource final : public SegmentSource {
 public:
  explicit PosixSegmentSource(std::string dir) : dir_(std::move(dir)) {}
  base::Result<std::vector<std::string>> list() override;
  // Sequential buffered reads in large blocks (readahead hinted).
  base::Status read_all(const std::string& name, uint64_t bytes_max, std::string* out) override;
  base::Status read_head(const std::string& name, uint64_t n, std::string* out) override;

 private:
  std::string dir_;
};

// fsync(2) of the directory itself: makes creates, renames and unlinks durable.
base::Status fsync_dir(const std::string& dir);
base::Status make_dir(const std::string& dir);
// Replaces dir/name with `text` durably: dir/name.tmp written and fsynced,
// renamed over dir/name, the directory fsynced. For small metadata files
// (node.meta, peer pins, norikv's peer book); blocking.
base::Status write_file_durably(const std::string& dir, const std::string& name,
                                std::string_view text);
// Reads a small text file written by write_file_durably line by line:
// `fn(line_number, line)` for each non-empty line (numbered from 1), stopping
// at the first error it returns. A missing file is empty (ok); a file that
// exists but cannot be opened is kIo. Blocking.
base::Status for_each_line(const std::string& path,
                           const std::function<base::Status(int, const std::string&)>& fn);

}  // namespace nori::wal
