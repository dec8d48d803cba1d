// Basic vocabulary of the Raft core: ids, terms, indexes, log entries, the
// durable hard state, roles, read modes and the per-group configuration.
//
// Everything here is plain data with no behaviour; the state machine lives in
// raft/raft.h, the messages in raft/message.h, the storage contract in
// raft/storage.h. Node id 0 means "nobody" everywhere (no vote, no leader).
//
// Stability: the simulator, WAL and transport read these types. Fields are
// only ever added, never renamed or re-purposed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/base/clock.h"

namespace nori::raft {

using NodeId = uint64_t;   // 0 = none
using GroupId = uint64_t;  // one Raft group (shard)
using Term = uint64_t;     // 0 = before any election
using Index = uint64_t;    // log index; the first entry is 1, 0 = "before the log"

using base::Duration;
using base::TimePoint;

inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,  // an application command
  kNoop = 1,    // appended by every new leader; commits the leader's term
  kConfig = 2,  // reserved: configuration change (next issue, joint consensus)
};

struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;  // opaque to the core; empty for kNoop

  bool operator==(const Entry&) const = default;
};

// Bytes an entry accounts for in flow control and memory bounds: its payload
// plus a fixed per-entry overhead, so that empty entries are not free.
inline constexpr uint64_t kEntryOverheadBytes = 24;
inline uint64_t entry_bytes(const Entry& e) {
  return e.data.size() + kEntryOverheadBytes;
}

// What must be durable before the core may act on it (raft/storage.h):
// `term` and `vote` are the safety-critical pair; `commit` is a hint the
// driver may persist lazily (restart is correct with any commit <= the real
// one, including 0). The core only ever hands out a commit whose entries are
// also durable locally, so a restart never treats a stale on-disk entry as
// committed.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  bool operator==(const HardState&) const = default;
};

enum class Role : uint8_t {
  kFollower = 0,
  kPreCandidate = 1,  // running a pre-vote; term not yet bumped
  kCandidate = 2,
  kLeader = 3,
};

// How linearizable a read must be (Raft::read).
enum class ReadMode : uint8_t {
  // Linearizable. Served from the leader lease with no round trip while the
  // lease holds; otherwise falls back to a read-index round.
  kLease = 0,
  // Linearizable. Always confirms leadership with one heartbeat round sent
  // after the read arrived (shared by all reads waiting for it).
  kReadIndex = 1,
  // NOT linearizable: any replica, any role, served at what it has applied.
  // May return arbitrarily old data (a partitioned replica). Named as such.
  kStaleNoGuarantee = 2,
};

const char* to_string(Role role);
const char* to_string(ReadMode mode);

}  // namespace nori::raft
