// SimDisk: a deterministic in-memory directory for WAL tests, with the
// failure model that crash-only testing misses.
//
// - A write lands in the file's volatile image and marks its blocks dirty; a
//   sync (fdatasync, or a durable write's completion) makes them durable.
// - crash(rng) keeps an arbitrary subset of the dirty blocks (each kept or
//   lost independently, not only a torn last block), then the volatile image
//   becomes the durable one: everything a real disk may legally do after
//   power loss to data that was never reported durable.
// - Faults: fail the n-th next write or sync with EIO, and a space budget
//   that makes create/extend fail with kNoSpace.
// - Metadata (create, rename, unlink, resize) is durable at once: a
//   simplification; the real driver syncs the directory at each step.
//
// Single-threaded; tests own it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "runtime/base/result.h"
#include "wal/recovery.h"

namespace nori::wal {

class SimDisk {
 public:
  explicit SimDisk(uint32_t block_bytes = 4096) : block_bytes_(block_bytes) {}

  base::Status create(const std::string& name, uint64_t size);
  base::Status write(const std::string& name, uint64_t offset, const char* data, size_t n);
  // Makes the dirty blocks of [offset, offset+n) durable (a durable write).
  base::Status sync_range(const std::string& name, uint64_t offset, size_t n);
  base::Status sync(const std::string& name);
  base::Status rename(const std::string& from, const std::string& to);
  base::Status unlink(const std::string& name);
  bool exists(const std::string& name) const { return files_.count(name) != 0; }
  std::vector<std::string> list() const;
  // The current (volatile) bytes of a file; empty if missing.
  std::string read(const std::string& name) const;
  // Damage helpers for tests: edit the durable and volatile image alike.
  std::string& mutable_bytes(const std::string& name);

  // Power loss: each dirty block survives or not, independently.
  void crash(std::mt19937_64& rng);
  // Power loss where keep(name, block index) decides which dirty blocks survive.
  void crash_with(const std::function<bool(const std::string&, uint64_t)>& keep);
  uint64_t dirty_blocks() const;

  // Faults.
  void fail_write_after(int64_t n) { fail_write_in_ = n; }
  void fail_sync_after(int64_t n) { fail_sync_in_ = n; }
  void set_space_bytes(uint64_t bytes) { space_bytes_ = bytes; }
  uint64_t used_bytes() const;

 private:
  struct File {
    std::string bytes;    // what reads see
    std::string durable;  // what survives a crash
    std::set<uint64_t> dirty;
  };
  File* find(const std::string& name);
  const uint32_t block_bytes_;
  std::map<std::string, File> files_;
  int64_t fail_write_in_ = -1;
  int64_t fail_sync_in_ = -1;
  uint64_t space_bytes_ = UINT64_MAX;
};

// Recovery's view of a SimDisk.
class SimSegmentSource final : public SegmentSource {
 public:
  explicit SimSegmentSource(const SimDisk& disk) : disk_(disk) {}
  base::Result<std::vector<std::string>> list() override { return disk_.list(); }
  base::Status read_all(const std::string& name, uint64_t bytes_max, std::string* out) override;

 private:
  const SimDisk& disk_;
};

}  // namespace nori::wal
