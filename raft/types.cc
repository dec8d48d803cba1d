#include "raft/types.h"

#include "raft/message.h"
#include "raft/ready.h"

namespace nori::raft {

const char* to_string(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre-candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown-role";
}

const char* to_string(ReadMode mode) {
  switch (mode) {
    case ReadMode::kLease:
      return "lease";
    case ReadMode::kReadIndex:
      return "read-index";
    case ReadMode::kStaleNoGuarantee:
      return "stale-no-guarantee";
  }
  return "unknown-read-mode";
}

const char* to_string(MessageType type) {
  switch (type) {
    case MessageType::kVoteRequest:
      return "VoteRequest";
    case MessageType::kVoteReply:
      return "VoteReply";
    case MessageType::kAppend:
      return "Append";
    case MessageType::kAppendReply:
      return "AppendReply";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatReply:
      return "HeartbeatReply";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kSnapshotChunk:
      return "SnapshotChunk";
    case MessageType::kSnapshotReply:
      return "SnapshotReply";
  }
  return "unknown-message-type";
}

const char* to_string(EventKind kind) {
  switch (kind) {
    case EventKind::kVoteRequest:
      return "VoteReq";
    case EventKind::kVoteGranted:
      return "VoteGranted";
    case EventKind::kLeaderElected:
      return "LeaderElected";
    case EventKind::kStepDown:
      return "StepDown";
  }
  return "unknown-event";
}

}  // namespace nori::raft
