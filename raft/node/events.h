// Node events: what a group's replica went through (the seed's VizEvent
// stream), with group, term and time, for subscribers and JSON lines.
//
//   node.subscribe_events([](const NodeEvent& e) { log(to_json(e)); });
//
// Kinds: VoteReq{from}, VoteGranted{from}, LeaderElected{node}, StepDown, and
// SnapshotStart / SnapshotDone (taking one: on the node that takes it, from
// the capture to the durable file; installing one: on the receiving replica,
// from the first chunk written to the state machine restored; `node` is this
// node). `time` is CLOCK_BOOTTIME (comparable between processes of one
// machine, which nori-bench uses to time failovers), `unix_ms` wall time for
// people reading logs.
//
// Threading: a subscriber runs on the core of the group the event is about,
// inside that core's round: it must be quick and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "raft/types.h"

namespace nori::raft {

enum class NodeEventKind : uint8_t {
  kVoteReq = 0,        // a real vote request arrived from `node`
  kVoteGranted = 1,    // as candidate, counted a granted vote from `node`
  kLeaderElected = 2,  // `node` leads `term` (this node included)
  kStepDown = 3,       // this node stopped leading
  kSnapshotStart = 4,  // a snapshot is being taken or received here
  kSnapshotDone = 5,   // it is durable (taken) or installed (received)
};
const char* to_string(NodeEventKind kind);

struct NodeEvent {
  NodeEventKind kind = NodeEventKind::kVoteReq;
  GroupId group = 0;
  Term term = 0;
  NodeId node = kNoNode;  // from / elected leader / this node
  TimePoint time{};       // CLOCK_BOOTTIME
  int64_t unix_ms = 0;
};

// One JSON object, no newline: {"event":"LeaderElected","group":1,...}.
std::string to_json(const NodeEvent& e);

using EventFn = std::function<void(const NodeEvent&)>;

}  // namespace nori::raft
