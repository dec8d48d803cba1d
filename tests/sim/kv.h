// The key-value state machine the simulated clients drive, and the encoding
// of its commands as Raft entry payloads.
//
// A command is (op, client, sequence, key, value); client and sequence make
// every payload unique, so the applied-sequence checker can tell a duplicated
// or reordered entry from a legitimate one. get is served by reads, never
// replicated. Single-threaded, per replica; rebuilt on restart from the
// latest durable snapshot (encode_state / decode_state, the snapshot file's
// contents) and the log after it.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "runtime/base/result.h"

namespace nori::sim {

enum class KvOp : uint8_t { kPut = 1, kAppend = 2 };

struct KvCommand {
  KvOp op = KvOp::kPut;
  uint64_t client = 0;
  uint64_t seq = 0;
  std::string key;
  std::string value;
};

std::string encode(const KvCommand& c);
base::Result<KvCommand> decode_command(std::string_view data);

class KvStore {
 public:
  void apply(const KvCommand& c);
  // "" for a missing key (the history format's convention).
  std::string get(const std::string& key) const;
  const std::map<std::string, std::string>& data() const { return data_; }

  // Snapshot file contents: varint count, then (key, value) length-prefixed,
  // in key order (so equal states encode equally).
  std::string encode_state() const;
  static base::Result<KvStore> decode_state(std::string_view data);
  bool operator==(const KvStore&) const = default;

 private:
  std::map<std::string, std::string> data_;
};

}  // namespace nori::sim
