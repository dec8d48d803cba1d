#include "raft/node/events.h"

#include <fmt/format.h>

namespace nori::raft {

const char* to_string(NodeEventKind kind) {
  switch (kind) {
    case NodeEventKind::kVoteReq:
      return "VoteReq";
    case NodeEventKind::kVoteGranted:
      return "VoteGranted";
    case NodeEventKind::kLeaderElected:
      return "LeaderElected";
    case NodeEventKind::kStepDown:
      return "StepDown";
    case NodeEventKind::kSnapshotStart:
      return "SnapshotStart";
    case NodeEventKind::kSnapshotDone:
      return "SnapshotDone";
  }
  return "?";
}

std::string to_json(const NodeEvent& e) {
  const char* field = "node";
  if (e.kind == NodeEventKind::kVoteReq || e.kind == NodeEventKind::kVoteGranted) field = "from";
  return fmt::format(R"({{"event":"{}","group":{},"term":{},"{}":{},"boot_ns":{},"unix_ms":{}}})",
                     to_string(e.kind), e.group, e.term, field, e.node, base::to_ns(e.time),
                     e.unix_ms);
}

}  // namespace nori::raft
