// Node-control messages: requests one node makes of another node as a whole
// rather than of one Raft group (internal to raft::Node). Today: "run this
// membership change of group g for me" (Node::add_node / remove_node forward
// each group's change to that group's leader) and its reply.
//
// Transport: an ordinary group message (net::MessageType::kGroup) addressed
// to the reserved group id kNodeControlGroup, on the link of the core that
// hosts the group concerned (the same core on every node: placement). So it
// is authenticated like every other message of the link: only a node the
// transport admitted (a member of some configuration on that core, its
// handshake MAC'd with the cluster secret and its incarnation pinned) can
// send one. A request that is lost (the kGroup lane may drop for space, a
// link may close) is simply not answered: the sender's deadline covers it.
//
// Format (little-endian, base::ByteWriter): u8 kind, then
//   kMemberRequest: u64 request_id, u64 group, u8 adding, u8 wait, u64 node,
//                   varint-prefixed address (at most kAddressBytesMax)
//   kMemberReply:   u64 request_id, u8 ok, u8 error kind, u64 hint,
//                   varint-prefixed message (at most kMessageBytesMax)
// Decoders are bounds-checked: malformed input is kProtocol and is dropped.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// No application group may use this id (Node::open and create_group refuse it).
inline constexpr GroupId kNodeControlGroup = std::numeric_limits<GroupId>::max();

enum class NodeControlKind : uint8_t { kMemberRequest = 1, kMemberReply = 2 };

struct MemberRequestMsg {
  uint64_t request_id = 0;
  GroupId group = 0;
  bool adding = false;
  uint8_t wait = 0;  // Node::MemberWait
  NodeId node = kNoNode;
  std::string address;
};

struct MemberReplyMsg {
  uint64_t request_id = 0;
  base::Status status;  // the change's outcome on the leader
};

inline constexpr size_t kAddressBytesMax = 256;
inline constexpr size_t kMessageBytesMax = 1024;

std::string encode_member_request(const MemberRequestMsg& m);
std::string encode_member_reply(const MemberReplyMsg& m);
// The kind of a node-control message, or kProtocol.
base::Result<NodeControlKind> node_control_kind(std::string_view payload);
base::Result<MemberRequestMsg> decode_member_request(std::string_view payload);
base::Result<MemberReplyMsg> decode_member_reply(std::string_view payload);

}  // namespace nori::raft
