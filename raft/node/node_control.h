// Node-control messages: what one node tells or asks another node as a whole
// rather than one Raft group (internal to raft::Node): "run this membership
// change of group g for me" (Node::add_node / remove_node forward each
// group's change to that group's leader) and its reply; and the address book
// a core hands each peer when their link comes up (address_gossip.h: how a
// restarted node learns the address of a member added while it was down).
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
//   kAddressBook:   varint count (at most kAddressBookEntriesMax), then count
//                   entries sorted by node id, strictly increasing:
//                   u64 node (non-zero), u64 incarnation (0: not pinned by
//                   the sender), varint-prefixed address (a member address
//                   as configurations record it: "host:port" of core 0,
//                   parse_member_address must accept it)
// Decoders are bounds-checked: malformed input is kProtocol and is dropped
// (the whole message: a book with one bad entry teaches nothing). A node
// that does not know a kind drops the message the same way, so a new kind
// needs no protocol version (docs/wire-format.md, section 7).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "raft/types.h"
#include "runtime/base/result.h"

namespace nori::raft {

// No application group may use this id (Node::open and create_group refuse it).
inline constexpr GroupId kNodeControlGroup = std::numeric_limits<GroupId>::max();

enum class NodeControlKind : uint8_t { kMemberRequest = 1, kMemberReply = 2, kAddressBook = 3 };

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

// One member of the sender's configurations on this core, as it knows it.
struct AddressBookEntry {
  NodeId node = kNoNode;
  uint64_t incarnation = 0;  // the sender's pin (peer_pins.h); 0: none yet
  std::string address;
  bool operator==(const AddressBookEntry&) const = default;
};

struct AddressBookMsg {
  std::vector<AddressBookEntry> entries;  // sorted by node, no duplicates
};

inline constexpr size_t kAddressBytesMax = 256;
inline constexpr size_t kMessageBytesMax = 1024;
// Members per address book: far above any cluster this runs (each entry is
// at most 8 + 8 + 2 + kMemberAddressBytesMax bytes, so a book stays under
// 18 KiB, well inside one frame).
inline constexpr size_t kAddressBookEntriesMax = 64;

std::string encode_member_request(const MemberRequestMsg& m);
std::string encode_member_reply(const MemberReplyMsg& m);
// m.entries must be sorted, unique, non-zero, valid and at most
// kAddressBookEntriesMax (asserted: the caller builds it from its own book).
std::string encode_address_book(const AddressBookMsg& m);
// The kind of a node-control message, or kProtocol.
base::Result<NodeControlKind> node_control_kind(std::string_view payload);
base::Result<MemberRequestMsg> decode_member_request(std::string_view payload);
base::Result<MemberReplyMsg> decode_member_reply(std::string_view payload);
base::Result<AddressBookMsg> decode_address_book(std::string_view payload);

}  // namespace nori::raft
