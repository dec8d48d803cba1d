// The Raft messages exchanged between replicas of one group.
//
// Every message has a common header (group, from, to, term) and one body.
// Heartbeats are their own types, separate from appends, so the transport can
// coalesce the heartbeats of many groups to one peer into one frame: a
// heartbeat carries only (group, term, commit clamped to what that follower
// holds, round) and its reply echoes the round.
//
// Wire encoding: raft/codec.h, specified in docs/raft-messages.md. Type codes
// are part of the wire format: never renumber; add new codes at the end.
//
// Durations on the wire (remaining promises, remaining waits) are relative
// nanoseconds measured on the sender's clock, never absolute times: clocks of
// different nodes are not comparable (docs/lease.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "raft/types.h"

namespace nori::raft {

enum class MessageType : uint8_t {
  kVoteRequest = 1,  // pre-vote or vote (VoteRequest::pre_vote)
  kVoteReply = 2,
  kAppend = 3,
  kAppendReply = 4,
  kHeartbeat = 5,
  kHeartbeatReply = 6,
  kTimeoutNow = 7,
  kSnapshotChunk = 8,  // one chunk of a snapshot file, leader -> follower
  kSnapshotReply = 9,  // the follower's progress through that snapshot
};
inline constexpr uint8_t kMessageTypeMax = 9;

const char* to_string(MessageType type);

// Pre-vote: header term = the term the sender would campaign in (its term + 1),
// nothing is persisted by either side. Vote: header term = the candidate's
// (durable) term.
struct VoteRequest {
  bool pre_vote = false;
  Index last_index = 0;
  Term last_term = 0;
  // Leadership transfer (the candidate received TimeoutNow): the leader and
  // term it replaces. Voters then skip leader stickiness and drop only their
  // promise to exactly that (leader, term). kNoNode/0 for a normal election.
  NodeId transfer_leader = kNoNode;
  Term transfer_term = 0;
};

struct VoteReply {
  bool pre_vote = false;
  bool granted = false;
  // The voter's remaining promise to any previous leader at the time it
  // decided, in nanoseconds of the voter's clock (0 if none). The candidate
  // waits it out, widened for drift, before committing or serving lease reads.
  int64_t promise_remaining_ns = 0;
};

struct Append {
  Index prev_index = 0;
  Term prev_term = 0;
  Index commit = 0;  // the leader's commit index
  std::vector<Entry> entries;
};

struct AppendReply {
  bool success = false;
  // success: the follower's log matches the leader's up to match_index, and
  // those entries are durable on the follower by the time this reply is sent.
  Index match_index = 0;
  // !success: hints for fast backtracking. conflict_term is the follower's
  // term at prev_index (0 if the follower's log is shorter; then
  // conflict_index = follower's last index + 1); conflict_index is the first
  // index the follower holds of conflict_term.
  Index conflict_index = 0;
  Term conflict_term = 0;
  Index last_index = 0;  // the follower's last log index (diagnostics, probing)
  // !success: the prev_index of the append being rejected, so the leader can
  // ignore rejections of appends it has already moved past.
  Index rejected_index = 0;
};

struct Heartbeat {
  Index commit = 0;    // min(leader commit, the follower's match index)
  uint64_t round = 0;  // heartbeat round number, echoed by the reply
  // The leader's last heartbeat before it quiesces the group (raft/raft.h,
  // "Quiescence"): a follower whose log ends at `commit` stops its election
  // timer. Sent as a full message (the coalesced heartbeat batch has no room
  // for a flag); answered like any heartbeat.
  bool quiesce = false;
};

struct HeartbeatReply {
  uint64_t round = 0;
};

// Leadership transfer: "start an election now, skipping pre-vote". The header
// (from, term) names the leader and term being replaced.
struct TimeoutNow {
  // What was left of the sender's own post-election wait (nanoseconds of the
  // sender's clock): the target waits it out, widened for drift.
  int64_t leader_wait_remaining_ns = 0;
};

// Snapshot transfer, stop-and-wait, one chunk per round trip (the driver's
// sender bounds memory and rate; raft/raft.h "Snapshots"). A transfer is
// identified by (header term = the leader's term, index, index_term): a
// follower resumes a partial transfer only for the same identity, and
// restarts from offset 0 otherwise.
struct SnapshotChunk {
  Index index = 0;           // the snapshot's last included index
  Term index_term = 0;       // the term of that entry
  uint64_t offset = 0;       // of `data` in the snapshot file
  uint64_t total_bytes = 0;  // size of the whole file
  uint64_t digest = 0;       // xxh3_64 of the whole file, checked before installing
  bool last = false;         // data ends the file
  std::string membership;    // Membership::encode() of the configuration at `index`
  std::string data;
};

struct SnapshotReply {
  Index index = 0;  // the transfer this answers
  Term index_term = 0;
  // !done: the follower holds the file up to here; the next chunk starts here.
  uint64_t next_offset = 0;
  // done: installed, or the follower's commit index was already at or past
  // `index` (the snapshot was ignored); its log matches up to match_index.
  bool done = false;
  Index match_index = 0;
};

// A copyable box: a SnapshotChunk lives on the heap so that it does not
// widen every Message (heartbeats are copied by the tens of thousands per
// round; an inline chunk made Message 152 bytes instead of 88).
template <typename T>
class Boxed {
 public:
  Boxed() : p_(std::make_unique<T>()) {}
  Boxed(T v) : p_(std::make_unique<T>(std::move(v))) {}  // NOLINT: implicit by design
  Boxed(const Boxed& o) : p_(std::make_unique<T>(*o.p_)) {}
  Boxed(Boxed&&) noexcept = default;
  Boxed& operator=(const Boxed& o) {
    p_ = std::make_unique<T>(*o.p_);
    return *this;
  }
  Boxed& operator=(Boxed&&) noexcept = default;
  T& operator*() { return *p_; }
  const T& operator*() const { return *p_; }
  T* operator->() { return p_.get(); }
  const T* operator->() const { return p_.get(); }

 private:
  std::unique_ptr<T> p_;
};
using SnapshotChunkMsg = Boxed<SnapshotChunk>;

using MessageBody = std::variant<VoteRequest, VoteReply, Append, AppendReply, Heartbeat,
                                 HeartbeatReply, TimeoutNow, SnapshotChunkMsg, SnapshotReply>;

struct Message {
  GroupId group = 0;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  MessageBody body;

  MessageType type() const { return static_cast<MessageType>(body.index() + 1); }
};

// The variant order is the wire type code minus one.
static_assert(std::variant_size_v<MessageBody> == kMessageTypeMax);
static_assert(std::is_same_v<std::variant_alternative_t<0, MessageBody>, VoteRequest>);
static_assert(std::is_same_v<std::variant_alternative_t<4, MessageBody>, Heartbeat>);
static_assert(std::is_same_v<std::variant_alternative_t<8, MessageBody>, SnapshotReply>);
static_assert(sizeof(Message) <= 96, "a message body widened every Message");

}  // namespace nori::raft
