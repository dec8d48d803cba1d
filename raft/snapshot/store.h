// Snapshot files on disk for the Raft driver (nori::raft_snapshot): writing
// a state machine's snapshot as a stream, receiving one in chunks from a
// leader, reading one in chunks to send it, and recovering the directory.
//
// File format (one file per snapshot, "snap-<index>-<term>.snap"):
//   header  u64 magic, u32 version, u32 meta_len, meta (SnapshotMeta:
//           varint index, varint term, Membership::encode())
//   payload the state machine's bytes, opaque here
//   trailer u64 xxh3_64 of every byte before it (the whole-file digest)
// The bytes sent to a follower are the file itself, so the follower checks
// the same digest and reads the snapshot's identity from the header before
// installing (raft/storage.h, "Installing a snapshot", step 1).
//
// Durability: a file becomes visible under its final name only when
// complete: written to "<name>.tmp", fdatasync, rename, fsync of the
// directory. recover() deletes temporary files (a crash mid-write) and
// superseded snapshots (older than the newest valid one) that are not pinned.
//
// Memory: nothing holds a whole snapshot; writers and readers stream through
// caller-sized buffers.
//
// Threading: a SnapshotStore and its writers/readers are used from one
// thread at a time (the driver runs them off the reactor's hot path: they do
// blocking file I/O). Pins are counted per file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "raft/storage.h"
#include "runtime/base/result.h"

namespace nori::raft::snapshot {

// Where the application's state machine writes its snapshot and reads it back.
class SnapshotSink {
 public:
  virtual ~SnapshotSink() = default;
  virtual base::Status write(std::string_view bytes) = 0;
};
class SnapshotSource {
 public:
  virtual ~SnapshotSource() = default;
  // Reads up to out.size() payload bytes into out; 0 at the end.
  virtual base::Result<size_t> read(char* out, size_t n) = 0;
};

// The application's side: a point-in-time view written as a stream, and a
// restore from a stream. Neither may need the whole snapshot in memory.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  virtual base::Status write_snapshot(SnapshotSink& sink) = 0;
  virtual base::Status restore_snapshot(SnapshotSource& source) = 0;
};

struct SnapshotFile {
  SnapshotMeta meta;
  std::string path;
  uint64_t size = 0;    // whole file, trailer included
  uint64_t digest = 0;  // the trailer
};

class SnapshotStore;

// Streams one new snapshot to "<final>.tmp"; commit() makes it durable and
// visible. Destroying an uncommitted writer removes the temporary file.
class SnapshotWriter final : public SnapshotSink {
 public:
  ~SnapshotWriter() override;
  base::Status write(std::string_view bytes) override;
  base::Result<SnapshotFile> commit();

 private:
  friend class SnapshotStore;
  SnapshotWriter(SnapshotStore& store, SnapshotMeta meta, std::string final_path);
  base::Status write_raw(std::string_view bytes);
  SnapshotStore& store_;
  SnapshotMeta meta_;
  std::string final_path_;
  std::string tmp_path_;
  int fd_ = -1;
  void* hash_ = nullptr;  // XXH3_state_t
  uint64_t size_ = 0;
  bool committed_ = false;
};

// Receives a snapshot file in order, chunk by chunk (raft::SnapshotChunkIn).
class SnapshotReceiver {
 public:
  ~SnapshotReceiver();
  // Appends the chunk at `offset`, which must be what was written so far.
  base::Status write_chunk(uint64_t offset, std::string_view data);
  uint64_t written() const { return size_; }
  // After the last chunk: fdatasync, check the whole-file digest and the
  // identity in the header against `expected`, rename, fsync the directory.
  base::Result<SnapshotFile> finish(const SnapshotMeta& expected, uint64_t digest);

 private:
  friend class SnapshotStore;
  SnapshotReceiver(SnapshotStore& store, std::string tmp_path, int fd);
  SnapshotStore& store_;
  std::string tmp_path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  bool done_ = false;
};

class SnapshotStore {
 public:
  static base::Result<std::unique_ptr<SnapshotStore>> open(std::string dir);
  ~SnapshotStore();

  // Removes temporary files and invalid or superseded snapshots (unpinned);
  // returns the newest valid snapshot (meta.index 0 if none).
  base::Result<SnapshotFile> recover();

  base::Result<std::unique_ptr<SnapshotWriter>> begin(const SnapshotMeta& meta);
  base::Result<std::unique_ptr<SnapshotReceiver>> begin_receive(const SnapshotMeta& meta);

  // Reads [offset, offset + n) of a whole file (for sending chunks).
  base::Result<std::string> read_file_range(const SnapshotFile& f, uint64_t offset, size_t n) const;
  // Streams the payload of `f` (for restoring the state machine), after
  // checking its digest.
  base::Result<std::unique_ptr<SnapshotSource>> open_payload(const SnapshotFile& f) const;

  // Pinned files are never removed (a transfer is reading them).
  void pin(const SnapshotFile& f) { ++pins_[f.path]; }
  void unpin(const SnapshotFile& f);
  bool pinned(const std::string& path) const { return pins_.count(path) > 0; }

  const std::string& dir() const { return dir_; }
  std::string path_for(const SnapshotMeta& meta) const;
  base::Status sync_dir() const;

 private:
  explicit SnapshotStore(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
  std::map<std::string, int> pins_;
};

// Encoded header of a snapshot file for `meta` (exposed for tests).
std::string encode_header(const SnapshotMeta& meta);
// Verifies a whole file (digest, header) and returns its description.
base::Result<SnapshotFile> verify_file(const std::string& path);

}  // namespace nori::raft::snapshot
