// libFuzzer target: arbitrary bytes into the node-control decoders
// (raft/node/node_control.h), which read what any admitted peer sends on the
// reserved group. Byte 0 picks the mode: the raw bytes as a message; the
// bytes behind the address-book kind byte; or an address book assembled
// from the input (a small count, then per entry a node id step, an
// incarnation and a fuzzed address of fuzzed length), so the entry checks
// (order, address parsing) see well-framed input and not only early
// truncations. Every accepted message survives re-encoding, and every
// accepted book goes through AddressGossip.
#include <cstring>
#include <string>
#include <string_view>

#include "raft/node/address_gossip.h"
#include "raft/node/node_control.h"
#include "runtime/base/assert.h"
#include "runtime/base/bytes.h"

using namespace nori::raft;

namespace {

// Takes n bytes from the front of `in` (fewer if it is shorter).
std::string_view take(std::string_view& in, size_t n) {
  std::string_view out = in.substr(0, n);
  in.remove_prefix(out.size());
  return out;
}

uint8_t take_u8(std::string_view& in) {
  std::string_view b = take(in, 1);
  return b.empty() ? 0 : static_cast<uint8_t>(b[0]);
}

std::string assemble_book(std::string_view in) {
  std::string out;
  nori::base::ByteWriter w(out);
  w.u8(static_cast<uint8_t>(NodeControlKind::kAddressBook));
  const uint8_t count = take_u8(in) % 8;
  w.varint(count);
  NodeId node = 0;
  for (uint8_t i = 0; i < count; ++i) {
    node += take_u8(in) % 4;  // 0 repeats the previous node: a duplicate
    w.u64(node);
    w.u64(take_u8(in) % 3);
    w.length_prefixed(take(in, take_u8(in) % 40));
  }
  return out;
}

void check_book(std::string_view payload) {
  auto book = decode_address_book(payload);
  if (!book.ok()) return;
  // What was accepted survives the encoder unchanged (the bytes may differ:
  // the reader takes non-minimal varints).
  auto again = decode_address_book(encode_address_book(*book));
  NORI_ASSERT(again.ok() && again->entries == book->entries);
  AddressGossip g;
  g.received(1, book->entries);
  g.received(2, std::move(book->entries));
  for (const AddressGossip::Introduced& m : g.introduced({1, 2}, 3))
    NORI_ASSERT(m.node != 3 && m.node != 1 && m.node != 2 && !m.address.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string payload;
  switch (data[0] % 3) {
    case 0:
      payload.assign(rest);
      break;
    case 1:
      payload.push_back(static_cast<char>(NodeControlKind::kAddressBook));
      payload.append(rest);
      break;
    default:
      payload = assemble_book(rest);
  }
  auto kind = node_control_kind(payload);
  if (!kind.ok()) return 0;
  switch (*kind) {
    case NodeControlKind::kMemberRequest: {
      auto m = decode_member_request(payload);
      if (!m.ok()) break;
      auto again = decode_member_request(encode_member_request(*m));
      NORI_ASSERT(again.ok() && again->request_id == m->request_id && again->group == m->group &&
                  again->adding == m->adding && again->wait == m->wait && again->node == m->node &&
                  again->address == m->address);
      break;
    }
    case NodeControlKind::kMemberReply:
      (void)decode_member_reply(payload);
      break;
    case NodeControlKind::kAddressBook:
      check_book(payload);
      break;
  }
  return 0;
}
