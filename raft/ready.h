// Ready: everything one Raft object asks its driver to do, accumulated across
// calls (step, tick, propose, read, acknowledgements) and drained with
// Raft::take_ready(Ready&).
//
// The driver reuses one Ready per group (or per driver round): take_ready
// clears `out` and swaps buffers, so draining allocates nothing in steady
// state. A driver batching many groups calls take_ready on each group with
// output (Raft::has_ready()) and merges the vectors however it likes.
//
// Order of work for the driver, per Ready:
//   1. Start persisting `hard_state` (if set), then `truncate_from` (if set)
//      and `entries`. The hard-state record may go ahead of queued entries.
//   2. Send every message with after == kNow immediately (the leader's
//      appends go out in parallel with its own disk write).
//   3. Send messages with after == kHardState once `hard_state` of this Ready
//      (or a later one) is durable; messages with after == kEntries once
//      everything persisted by this Ready and every earlier one is durable.
//   4. Acknowledge durability (Raft::hard_state_persisted /
//      entries_persisted), apply `committed` in order and report
//      Raft::applied, serve `reads` whose index is applied, resolve
//      `proposals`, publish `events`.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "raft/message.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// When a message may leave this node.
enum class SendAfter : uint8_t {
  kNow = 0,        // no durability needed
  kHardState = 1,  // after this Ready's hard_state is durable (the core always
                   // includes one in a Ready that has such a message)
  kEntries = 2,    // after this Ready's (and all earlier) entries, truncation and hard state
};

struct OutMessage {
  Message msg;
  SendAfter after = SendAfter::kNow;
};

// A read the core has admitted (Raft::read) is answered exactly once: either
// granted (serve it from the local state machine, which has applied at least
// `index`) or failed with an error (kNotLeader with hint, kNoQuorum, kBusy...;
// reads have no side effects, so every failure is "certainly not served").
struct ReadResult {
  uint64_t request_id = 0;
  ReadMode mode = ReadMode::kLease;
  Index index = 0;         // granted: serve at any applied state >= index
  bool via_lease = false;  // granted from the lease (no round trip)
  std::optional<base::Error> error;

  bool granted() const { return !error.has_value(); }
};

// The outcome of a proposal that Raft::propose accepted (returned an index).
// ok: committed at `index` (it will be / has been delivered in `committed`).
// kOutcomeUnknown: appended, then leadership or the deadline was lost; it may
// still commit.
struct ProposalResult {
  uint64_t proposal_id = 0;
  Index index = 0;
  Term term = 0;
  std::optional<base::Error> error;

  bool ok() const { return !error.has_value(); }
};

enum class EventKind : uint8_t {
  kVoteRequest = 0,    // this node received a (real, not pre-) vote request from `node`
  kVoteGranted = 1,    // this node, as candidate, counted a granted vote from `node`
  kLeaderElected = 2,  // this node learned that `node` leads `term` (itself included)
  kStepDown = 3,       // this node stopped leading; `node` = this node
};
const char* to_string(EventKind kind);

struct Event {
  EventKind kind = EventKind::kVoteRequest;
  GroupId group = 0;
  Term term = 0;
  NodeId node = kNoNode;
  TimePoint time{};
};

// Leader -> driver: send one chunk of snapshot `meta` (the file the driver
// registered with Raft::snapshot_taken) to `to`, starting at `offset`, at
// most the driver's chunk size, stamped with `term`. One chunk per round
// trip: the next request comes with the follower's reply. `finished`: the
// transfer to `to` is over (installed, abandoned or superseded): unpin.
struct SnapshotSend {
  NodeId to = kNoNode;
  Term term = 0;
  SnapshotMeta meta;
  uint64_t offset = 0;
  bool finished = false;
};

// Follower -> driver: a chunk the core accepted (its offset is exactly what
// the driver has written so far for this transfer; offset 0 starts a new
// file, discarding any other partial one). Write it, then call
// Raft::snapshot_chunk_written; after the last chunk, verify the digest and
// install (raft/storage.h, "Installing a snapshot").
struct SnapshotChunkIn {
  NodeId from = kNoNode;
  Term term = 0;  // the leader's
  SnapshotChunk chunk;
};

// The snapshot work of one Ready (rare: allocated only when there is some).
// request: take a snapshot of the state machine as it is BEFORE applying
// this Ready's `committed` (its applied index is request->index), off the
// hot path, then call Raft::snapshot_taken(meta). compact_before: every
// entry below this index may be dropped from the log (the WAL's compaction
// mark); the core no longer reads them.
struct SnapshotWork {
  std::optional<SnapshotMeta> request;
  std::optional<Index> compact_before;
  std::vector<SnapshotSend> sends;
  std::vector<SnapshotChunkIn> chunks;
};

struct Ready {
  // Persist, then acknowledge (raft/storage.h).
  std::optional<HardState> hard_state;
  // Delete every entry with index >= truncate_from before appending `entries`.
  std::optional<Index> truncate_from;
  std::vector<Entry> entries;
  // A commit index whose entries are committed and durable on this replica
  // (persisting it is optional: a restart hint, see HardState::commit).
  Index commit = 0;

  std::vector<OutMessage> messages;
  // Committed, durable entries to apply, in index order, contiguous with the
  // previous Ready's.
  std::vector<Entry> committed;
  std::vector<ReadResult> reads;
  std::vector<ProposalResult> proposals;
  std::vector<Event> events;

  // Snapshots (raft/raft.h, "Snapshots"): null unless there is snapshot
  // work, so that an idle group's Ready stays small.
  std::unique_ptr<SnapshotWork> snapshot;

  bool empty() const {
    return !hard_state && !truncate_from && entries.empty() && messages.empty() &&
           committed.empty() && reads.empty() && proposals.empty() && events.empty() && !snapshot;
  }
  void clear() {
    hard_state.reset();
    truncate_from.reset();
    entries.clear();
    messages.clear();
    committed.clear();
    reads.clear();
    proposals.clear();
    events.clear();
    snapshot.reset();
  }
};

}  // namespace nori::raft
