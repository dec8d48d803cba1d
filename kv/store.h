// Store: the replicated key-value state machine of ONE shard, with client
// sessions for exactly-once writes, and streaming snapshot/restore.
//
// What it is for: norikv applies every committed entry of a shard's Raft
// group to that shard's Store (apply), serves reads from it once the node
// says a read is safe (read), and turns it into a snapshot stream and back.
//
// Entries (encode_write / apply): a session header (client id, sequence
// number, the client's acknowledged-below mark, the proposer's wall clock in
// ms, flags) and the command's argv (already validated and normalized by the
// proposer: relative expiries such as SET EX are rewritten to absolute PXAT
// so every replica computes the same state).
//
// Exactly-once (Raft thesis 6.3): each client connection has a 64-bit id and
// numbers its writes 1, 2, 3, ... (one sequence for all shards). A shard keeps
// per client the replies of the writes it applied whose sequence number is at
// or above the client's acknowledged-below mark (the lowest sequence number
// the connection has not yet answered). A write whose (client, seq) already
// has a reply is not applied again: the cached reply is returned, so a retry
// or a forward that raced its original is harmless. Sessions are created only
// by an entry flagged opens_session (a connection sets it on every write it
// sends to a shard until the first reply from that shard comes back, since
// pipelined writes may be reordered by forwarding); an unflagged write for an unknown client (its
// session expired) is not applied and answers kSessionExpiredReply (outcome unknown: an earlier
// copy may have applied before expiry).
//
// Session expiry (deterministic: every replica applies the same rule at the
// same log position): the Store's clock is the largest proposer clock seen in
// applied entries (never decreasing); a session untouched for session_ttl_ms
// of that clock is dropped, and beyond sessions_max the least recently used
// session is dropped. Retries must therefore finish within session_ttl_ms
// (default 10 min; the server's retries take seconds). Replies kept per
// session are bounded by session_replies_max, which must exceed the
// connection's in-flight write bound (server.h), else the oldest is dropped.
//
// Expiry of keys (SET EX/PX): writes treat a key as absent once its absolute
// expiry is at or below the entry's clock; reads treat it as absent once the
// serving node's wall clock passes it. Expired keys are removed when written
// or read, not by a background sweep (memory of never-touched expired keys is
// reclaimed at the next snapshot restore).
//
// Snapshot (docs/kv.md "Snapshot format"): a header, the sessions, then one
// length-prefixed record per key, then a trailer with counts and an XXH3
// checksum of everything before it. write_snapshot streams record by record;
// restore reads record by record into a new map and swaps it in only once
// the trailer checks out (a torn or corrupt snapshot leaves the Store as it
// was). Neither ever holds the serialized snapshot in memory.
//
// Keys live in a PersistentMap (kv/pmap.h), a copy-on-write hash trie, so
// clone() shares them in O(1) instead of copying them.
//
// Threading: a Store belongs to its shard's core and is touched only by that
// core's reactor. The one exception is a clone(): it may be handed to another
// thread (the node's snapshot thread writes and then destroys it) while this
// Store goes on applying, because the two share key nodes only through the
// map's atomic reference counts and the live Store copies a shared node
// before writing it (kv/pmap.h, "Threading").
#pragma once

#include <cstdint>
#include <istream>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kv/pmap.h"
#include "runtime/base/result.h"

namespace nori::kv {

struct StoreOptions {
  size_t sessions_max = 100'000;
  uint64_t session_ttl_ms = 10 * 60 * 1000;
  size_t session_replies_max = 4096;
  size_t snapshot_record_bytes_max = size_t{64} << 20;  // one key + value on restore
};

struct WriteHeader {
  uint64_t client = 0;     // non-zero connection id
  uint64_t seq = 0;        // 1, 2, ... per connection
  uint64_t ack_below = 0;  // every seq below has been answered to the client
  uint64_t now_ms = 0;     // proposer's wall clock (unix ms)
  bool opens_session = false;
};

// The reply of a write that met an unknown session (see header comment).
inline constexpr std::string_view kSessionExpiredReply =
    "-UNKNOWN session expired: the command may or may not have taken effect\r\n";

std::string encode_write(const WriteHeader& h, const std::vector<std::string>& argv);
// Decodes a whole entry (header and argv, nothing left over); false if
// `entry` is not an encoded write. It says nothing about the command itself.
bool decode_write(std::string_view entry, WriteHeader& h, std::vector<std::string>& argv);
// True if argv is a write in the normalized form normalize_write produces
// (known command, right arity, numeric arguments that parse): what the log
// may hold. Checked on forwarded entries before proposing and again on apply.
bool well_formed_write(const std::vector<std::string>& argv);
// The (client, seq) of an encoded write, or of the first write of a batch;
// false if `entry` is neither.
bool peek_session(std::string_view entry, uint64_t& client, uint64_t& seq);

// Batch entries: several encoded writes of one shard in one log entry, in the
// order they apply (a connection's pipelined writes; kv/server.cc). Each write
// keeps its own session header, so a write of a batch is deduplicated against
// a retry of the same (client, seq) sent on its own, and the other way round.
// At least 2 and at most kBatchWritesMax writes; a batch never nests.
inline constexpr size_t kBatchWritesMax = 4096;
// `writes` are encode_write results.
std::string encode_batch(const std::vector<std::string>& writes);
// The writes of a batch entry (views into `entry`); false if `entry` is not a
// well-framed batch. It says nothing about the writes themselves.
bool decode_batch(std::string_view entry, std::vector<std::string_view>& writes);
bool is_batch(std::string_view entry);

class Store {
 public:
  explicit Store(StoreOptions options = {}) : opt_(options) {}
  // Not copyable by accident (sessions hold iterators into the LRU list):
  // clone() is the copy.
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  // Moving is safe: a moved std::list keeps its nodes, so the sessions' LRU
  // iterators stay valid.
  Store(Store&&) = default;
  Store& operator=(Store&&) = default;

  // The point-in-time view a snapshot is written from while this Store goes
  // on applying (kv/snapshot.h). Keys: O(1), the clone shares the map's root
  // and each later write to either copies only the nodes on its own path.
  // Sessions: a deep copy, O(sessions + their cached replies), bounded by
  // sessions_max and session_replies_max. The clone may be read and destroyed
  // on another thread (see "Threading").
  std::unique_ptr<Store> clone() const;

  // Applies one committed entry (encoded by encode_write or encode_batch) at
  // `index` and appends one RESP reply per write it holds to `replies` (one
  // for a write, one per write of a batch, in order). A malformed write
  // (decode_write or well_formed_write fails) is not applied and answers an
  // -ERR reply, the same on every replica; a malformed batch answers one
  // -ERR reply and applies nothing. Both are counted in malformed_entries().
  void apply(uint64_t index, std::string_view entry, std::vector<std::string>& replies);
  // The same, the replies concatenated (what a pipelining client receives).
  std::string apply(uint64_t index, std::string_view entry);

  // The reply of an applied write, if still held (see header comment).
  std::optional<std::string> reply_for(uint64_t client, uint64_t seq) const;

  // Executes a read-only command (GET, MGET, EXISTS, STRLEN, DBSIZE) against
  // the current state; now_ms is the serving node's wall clock.
  std::string read(const std::vector<std::string>& argv, uint64_t now_ms);

  uint64_t applied_index() const { return applied_; }
  size_t size() const { return map_.size(); }
  size_t sessions() const { return sessions_.size(); }
  uint64_t clock_ms() const { return clock_ms_; }
  uint64_t malformed_entries() const { return malformed_entries_; }

  base::Status write_snapshot(std::ostream& out) const;
  // Replaces the whole state (sessions, keys, applied index) from a stream.
  base::Status restore(std::istream& in);

 private:
  struct Value {
    std::string data;
    uint64_t expire_at_ms = 0;  // 0: never
  };
  struct Session {
    uint64_t ack_below = 0;
    uint64_t last_ms = 0;
    std::map<uint64_t, std::string> replies;  // seq -> reply
    std::list<uint64_t>::iterator lru;
  };

  std::string apply_write(std::string_view entry);            // one write, applied_ already set
  std::string execute_write(std::vector<std::string>& argv);  // may move from argv
  // The key's value unless absent or expired at now_ms (an expired key is
  // erased). find_live copies nothing; find_live_mut makes the key's path
  // exclusive to this Store first, for writing the value in place.
  const Value* find_live(const std::string& key, uint64_t now_ms);
  Value* find_live_mut(const std::string& key, uint64_t now_ms);
  void touch_session(uint64_t client, Session& s);
  void expire_sessions();

  StoreOptions opt_;
  PersistentMap<Value> map_;
  std::unordered_map<uint64_t, Session> sessions_;
  std::list<uint64_t> lru_;  // front: least recently used client
  uint64_t applied_ = 0;
  uint64_t clock_ms_ = 0;
  uint64_t malformed_entries_ = 0;  // not persisted in snapshots: a diagnostic
};

// Validates a write command's arguments and normalizes it for the log
// (uppercase name, SET EX/PX -> PXAT). Error: a "-ERR ..." reply text.
base::Result<std::vector<std::string>> normalize_write(std::vector<std::string> argv,
                                                       uint64_t now_ms);

}  // namespace nori::kv
