#include "raft/node/node_control.h"

#include "raft/membership.h"
#include "raft/node/config.h"
#include "runtime/base/bytes.h"

namespace nori::raft {

using base::ErrorKind;

namespace {

constexpr uint8_t kLastErrorKind = static_cast<uint8_t>(ErrorKind::kUnavailable);
constexpr uint8_t kLastWait = 1;  // Node::MemberWait::kComplete

base::Error malformed(const char* what) {
  return base::err(ErrorKind::kProtocol, "malformed node-control {}", what);
}

}  // namespace

std::string encode_member_request(const MemberRequestMsg& m) {
  NORI_ASSERT(m.address.size() <= kAddressBytesMax, "address of {} bytes", m.address.size());
  std::string out;
  base::ByteWriter w(out);
  w.u8(static_cast<uint8_t>(NodeControlKind::kMemberRequest));
  w.u64(m.request_id);
  w.u64(m.group);
  w.u8(m.adding ? 1 : 0);
  w.u8(m.wait);
  w.u64(m.node);
  w.length_prefixed(m.address);
  return out;
}

std::string encode_member_reply(const MemberReplyMsg& m) {
  std::string out;
  base::ByteWriter w(out);
  w.u8(static_cast<uint8_t>(NodeControlKind::kMemberReply));
  w.u64(m.request_id);
  w.u8(m.status.ok() ? 1 : 0);
  if (m.status.ok()) {
    w.u8(0);
    w.u64(0);
    w.length_prefixed({});
  } else {
    const base::Error& e = m.status.error();
    w.u8(static_cast<uint8_t>(e.kind()));
    w.u64(e.hint());
    std::string_view msg = e.message();
    w.length_prefixed(msg.substr(0, kMessageBytesMax));
  }
  return out;
}

base::Result<NodeControlKind> node_control_kind(std::string_view payload) {
  if (payload.empty()) return malformed("message (empty)");
  const auto k = static_cast<uint8_t>(payload[0]);
  if (k != static_cast<uint8_t>(NodeControlKind::kMemberRequest) &&
      k != static_cast<uint8_t>(NodeControlKind::kMemberReply) &&
      k != static_cast<uint8_t>(NodeControlKind::kAddressBook)) {
    return base::err(ErrorKind::kProtocol, "unknown node-control kind {}", k);
  }
  return static_cast<NodeControlKind>(k);
}

base::Result<MemberRequestMsg> decode_member_request(std::string_view payload) {
  base::ByteReader r(payload);
  uint8_t kind = 0, adding = 0;
  MemberRequestMsg m;
  std::string_view addr;
  if (!r.u8(kind) || kind != static_cast<uint8_t>(NodeControlKind::kMemberRequest) ||
      !r.u64(m.request_id) || !r.u64(m.group) || !r.u8(adding) || adding > 1 || !r.u8(m.wait) ||
      m.wait > kLastWait || !r.u64(m.node) || !r.length_prefixed(addr, kAddressBytesMax) ||
      !r.empty()) {
    return malformed("member request");
  }
  m.adding = adding == 1;
  m.address.assign(addr);
  return m;
}

base::Result<MemberReplyMsg> decode_member_reply(std::string_view payload) {
  base::ByteReader r(payload);
  uint8_t kind = 0, ok = 0, error_kind = 0;
  uint64_t hint = 0;
  MemberReplyMsg m;
  std::string_view msg;
  if (!r.u8(kind) || kind != static_cast<uint8_t>(NodeControlKind::kMemberReply) ||
      !r.u64(m.request_id) || !r.u8(ok) || ok > 1 || !r.u8(error_kind) ||
      error_kind > kLastErrorKind || !r.u64(hint) || !r.length_prefixed(msg, kMessageBytesMax) ||
      !r.empty()) {
    return malformed("member reply");
  }
  if (ok == 0) {
    m.status = base::Error(static_cast<ErrorKind>(error_kind), std::string(msg), hint);
  }
  return m;
}

namespace {

// What encode asserts and decode checks of one entry after the previous one.
bool valid_entry(const AddressBookEntry& e, NodeId previous) {
  return e.node != kNoNode && e.node > previous && !e.address.empty() &&
         e.address.size() <= kMemberAddressBytesMax && parse_member_address(e.node, e.address).ok();
}

}  // namespace

std::string encode_address_book(const AddressBookMsg& m) {
  NORI_ASSERT(m.entries.size() <= kAddressBookEntriesMax, "address book of {} entries",
              m.entries.size());
  std::string out;
  base::ByteWriter w(out);
  w.u8(static_cast<uint8_t>(NodeControlKind::kAddressBook));
  w.varint(m.entries.size());
  NodeId previous = kNoNode;
  for (const AddressBookEntry& e : m.entries) {
    NORI_ASSERT(valid_entry(e, previous), "address book entry node {} at '{}' after node {}",
                e.node, e.address, previous);
    w.u64(e.node);
    w.u64(e.incarnation);
    w.length_prefixed(e.address);
    previous = e.node;
  }
  return out;
}

base::Result<AddressBookMsg> decode_address_book(std::string_view payload) {
  base::ByteReader r(payload);
  uint8_t kind = 0;
  uint64_t count = 0;
  if (!r.u8(kind) || kind != static_cast<uint8_t>(NodeControlKind::kAddressBook) ||
      !r.varint_bounded(count, kAddressBookEntriesMax)) {
    return malformed("address book");
  }
  AddressBookMsg m;
  m.entries.reserve(count);
  NodeId previous = kNoNode;
  for (uint64_t i = 0; i < count; ++i) {
    AddressBookEntry e;
    std::string_view addr;
    if (!r.u64(e.node) || !r.u64(e.incarnation) ||
        !r.length_prefixed(addr, kMemberAddressBytesMax)) {
      return malformed("address book entry");
    }
    e.address.assign(addr);
    if (!valid_entry(e, previous)) return malformed("address book entry");
    previous = e.node;
    m.entries.push_back(std::move(e));
  }
  if (!r.empty()) return malformed("address book (trailing bytes)");
  return m;
}

}  // namespace nori::raft
