// Address books (raft/node/node_control.h, kAddressBook) and what a core
// takes from them (raft/node/address_gossip.h), without sockets: every
// malformed book is refused whole, and gossip never decides about a node
// this core's log has named, never comes from a node that may not vouch,
// and never lets a stale incarnation in.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "raft/node/address_gossip.h"
#include "raft/node/node_control.h"
#include "runtime/base/bytes.h"

namespace nori::raft {
namespace {

using base::ErrorKind;
using Introduced = AddressGossip::Introduced;

AddressBookMsg sample_book() {
  AddressBookMsg m;
  m.entries = {{1, 11, "127.0.0.1:7000"}, {2, 0, "10.0.0.2:7100"}, {4, 44, "[::1]:9000"}};
  return m;
}

// An address book written field by field, to build inputs the encoder
// refuses to produce.
struct RawBook {
  std::string out;
  base::ByteWriter w{out};
  explicit RawBook(uint64_t count) {
    w.u8(static_cast<uint8_t>(NodeControlKind::kAddressBook));
    w.varint(count);
  }
  RawBook& entry(NodeId node, uint64_t incarnation, std::string_view address) {
    w.u64(node);
    w.u64(incarnation);
    w.length_prefixed(address);
    return *this;
  }
};

void expect_refused(std::string_view payload, const char* what) {
  auto r = decode_address_book(payload);
  ASSERT_FALSE(r.ok()) << what;
  EXPECT_EQ(r.error().kind(), ErrorKind::kProtocol) << what;
}

TEST(AddressBook, RoundTripsAndIsANodeControlKind) {
  const AddressBookMsg m = sample_book();
  const std::string bytes = encode_address_book(m);
  auto kind = node_control_kind(bytes);
  ASSERT_TRUE(kind.ok());
  EXPECT_EQ(*kind, NodeControlKind::kAddressBook);
  auto back = decode_address_book(bytes);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  EXPECT_EQ(back->entries, m.entries);
  auto empty = decode_address_book(encode_address_book({}));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->entries.empty());
}

TEST(AddressBook, EveryTruncationIsRefused) {
  const std::string bytes = encode_address_book(sample_book());
  for (size_t n = 0; n < bytes.size(); ++n)
    expect_refused(std::string_view(bytes).substr(0, n), "truncated");
}

TEST(AddressBook, TrailingBytesAreRefused) {
  expect_refused(encode_address_book(sample_book()) + "x", "trailing byte");
}

TEST(AddressBook, CountOverTheBoundIsRefusedBeforeAnyEntryIsRead) {
  // The count alone says too many: nothing is reserved or read for it.
  expect_refused(RawBook(kAddressBookEntriesMax + 1).out, "count over the bound");
  expect_refused(RawBook(UINT64_MAX).out, "huge count");
  // A count larger than the entries present.
  expect_refused(RawBook(2).entry(1, 0, "127.0.0.1:7000").out, "count over the entries");
}

TEST(AddressBook, UnsortedDuplicateOrZeroNodesAreRefused) {
  expect_refused(RawBook(2).entry(2, 0, "127.0.0.1:1").entry(1, 0, "127.0.0.1:2").out, "unsorted");
  expect_refused(RawBook(2).entry(3, 0, "127.0.0.1:1").entry(3, 0, "127.0.0.1:2").out, "duplicate");
  expect_refused(RawBook(1).entry(0, 0, "127.0.0.1:1").out, "node 0");
}

TEST(AddressBook, AddressesNobodyCouldDialAreRefused) {
  for (std::string bad :
       std::vector<std::string>{"", "localhost:7000", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000",
                                "[::1]:x", ":7000", std::string(300, '1')}) {
    expect_refused(RawBook(1).entry(5, 0, bad).out, bad.c_str());
  }
}

TEST(AddressBook, WrongKindIsRefused) {
  std::string bytes = encode_address_book(sample_book());
  bytes[0] = static_cast<char>(NodeControlKind::kMemberReply);
  expect_refused(bytes, "member reply kind");
  bytes[0] = 9;
  EXPECT_FALSE(node_control_kind(bytes).ok()) << "an unknown kind is dropped, not guessed";
}

// ---- AddressGossip ----------------------------------------------------------

constexpr NodeId kSelf = 3;

TEST(AddressGossip, IntroducesAMemberTheLogNeverNamed) {
  AddressGossip g;
  g.received(1, {{1, 0, "127.0.0.1:7000"}, {3, 33, "127.0.0.1:7200"}, {4, 44, "127.0.0.1:7300"}});
  // Node 1 is named by the log; node 3 is this node: neither is introduced.
  auto got = g.introduced({1, 2}, kSelf);
  EXPECT_EQ(got, (std::vector<Introduced>{{4, 44, "127.0.0.1:7300"}}));
}

TEST(AddressGossip, NodeTheLogNamedIsNeverIntroducedAgain) {
  // Node 4 was named by a configuration here (then removed by it): a peer
  // lagging behind that removal cannot bring it back.
  AddressGossip g;
  g.received(1, {{4, 44, "127.0.0.1:7300"}});
  EXPECT_TRUE(g.introduced({1, 2, 4}, kSelf).empty());
}

TEST(AddressGossip, ConflictingIncarnationsAreNotIntroduced) {
  // Two members disagree on node 4's incarnation: one has not seen it wiped
  // and re-added. Neither word is taken.
  AddressGossip g;
  g.received(1, {{4, 44, "127.0.0.1:7300"}});
  g.received(2, {{4, 45, "127.0.0.1:7300"}});
  EXPECT_TRUE(g.introduced({1, 2}, kSelf).empty());
  EXPECT_EQ(g.conflicts({1, 2}, kSelf), (std::vector<NodeId>{4}));
}

TEST(AddressGossip, UnpinnedWordDoesNotLoosenAPinnedOne) {
  // Node 1 has not met node 4 yet (incarnation 0), node 2 has: node 4 must
  // prove node 2's incarnation, whichever book came first.
  for (bool pinned_first : {true, false}) {
    AddressGossip g;
    std::vector<AddressBookEntry> unpinned{{4, 0, "127.0.0.1:7300"}};
    std::vector<AddressBookEntry> pinned{{4, 44, "127.0.0.1:7300"}};
    g.received(1, pinned_first ? pinned : unpinned);
    g.received(2, pinned_first ? unpinned : pinned);
    EXPECT_EQ(g.introduced({1, 2}, kSelf), (std::vector<Introduced>{{4, 44, "127.0.0.1:7300"}}));
  }
}

TEST(AddressGossip, DifferingAddressesTakeTheLowestSenders) {
  AddressGossip g;
  g.received(2, {{4, 0, "127.0.0.1:9999"}});
  g.received(1, {{4, 0, "127.0.0.1:7300"}});
  EXPECT_EQ(g.introduced({1, 2}, kSelf), (std::vector<Introduced>{{4, 0, "127.0.0.1:7300"}}));
}

TEST(AddressGossip, NewBookReplacesTheSendersOldOne) {
  // Node 1 committed node 4's removal: its next book no longer names it,
  // and node 4 is no longer introduced.
  AddressGossip g;
  g.received(1, {{4, 44, "127.0.0.1:7300"}, {5, 55, "127.0.0.1:7400"}});
  g.received(1, {{5, 55, "127.0.0.1:7400"}});
  EXPECT_EQ(g.introduced({1, 2}, kSelf), (std::vector<Introduced>{{5, 55, "127.0.0.1:7400"}}));
}

TEST(AddressGossip, SenderThatLeftTheConfigurationsIsForgotten) {
  AddressGossip g;
  g.received(1, {{4, 44, "127.0.0.1:7300"}});
  g.received(2, {{5, 55, "127.0.0.1:7400"}});
  EXPECT_FALSE(g.keep_only({1, 2}));
  EXPECT_TRUE(g.keep_only({2}));  // node 1 removed here
  EXPECT_EQ(g.senders(), 1u);
  EXPECT_EQ(g.introduced({2}, kSelf), (std::vector<Introduced>{{5, 55, "127.0.0.1:7400"}}));
}

}  // namespace
}  // namespace nori::raft
