#include "kv/store.h"

#include <gtest/gtest.h>

#include <sstream>

namespace nori::kv {
namespace {

using Argv = std::vector<std::string>;

struct Client {
  uint64_t id;
  uint64_t seq = 0;
  bool opened = false;
  WriteHeader next(uint64_t now_ms = 1000) {
    WriteHeader h;
    h.client = id;
    h.seq = ++seq;
    h.ack_below = seq;  // every earlier request was answered
    h.now_ms = now_ms;
    h.opens_session = !opened;
    opened = true;
    return h;
  }
};

std::string entry(const WriteHeader& h, Argv argv) {
  auto n = normalize_write(std::move(argv), h.now_ms);
  EXPECT_TRUE(n.ok());
  return encode_write(h, *n);
}

TEST(Store, RetriedIncrIsAppliedOnce) {
  Store s;
  Client c{7};
  const std::string e = entry(c.next(), {"incr", "n"});
  EXPECT_EQ(s.apply(1, e), ":1\r\n");
  // The same entry again (a retry or a forward that raced the original).
  EXPECT_EQ(s.apply(2, e), ":1\r\n");
  EXPECT_EQ(s.read({"GET", "n"}, 1000), "$1\r\n1\r\n");
  EXPECT_EQ(s.apply(3, entry(c.next(), {"INCRBY", "n", "5"})), ":6\r\n");
}

TEST(Store, RetriedAppendIsAppliedOnceEvenOutOfOrder) {
  Store s;
  Client c{9};
  WriteHeader h1 = c.next();
  WriteHeader h2 = c.next();
  h2.ack_below = 1;         // pipelined: seq 1 not answered yet when 2 was sent
  h2.opens_session = true;  // no reply from this shard yet: every write may open it
  const std::string e1 = entry(h1, {"APPEND", "k", "a"});
  const std::string e2 = entry(h2, {"APPEND", "k", "b"});
  EXPECT_EQ(s.apply(1, e2), ":1\r\n");  // a forward overtook the original
  EXPECT_EQ(s.apply(2, e1), ":2\r\n");
  EXPECT_EQ(s.apply(3, e2), ":1\r\n");  // duplicate answers the cached reply
  EXPECT_EQ(s.apply(4, e1), ":2\r\n");
  EXPECT_EQ(s.read({"GET", "k"}, 0), "$2\r\nba\r\n");
  EXPECT_EQ(s.reply_for(9, 2).value(), ":1\r\n");
}

TEST(Store, AnsweredRequestsAreForgottenOnceAcknowledged) {
  Store s;
  Client c{3};
  s.apply(1, entry(c.next(), {"SET", "a", "1"}));
  s.apply(2, entry(c.next(), {"SET", "a", "2"}));  // ack_below = 2 drops seq 1
  EXPECT_FALSE(s.reply_for(3, 1).has_value());
  EXPECT_TRUE(s.reply_for(3, 2).has_value());
}

TEST(Store, WriteForExpiredSessionIsNotApplied) {
  StoreOptions o;
  o.session_ttl_ms = 1000;
  Store s(o);
  Client a{1}, b{2};
  s.apply(1, entry(a.next(1000), {"INCR", "n"}));
  const std::string retry = entry(a.next(1500), {"INCR", "n"});
  // Another client's write moves the log clock past a's ttl: a's session goes.
  s.apply(2, entry(b.next(5000), {"SET", "x", "1"}));
  EXPECT_EQ(s.sessions(), 1u);
  EXPECT_EQ(s.apply(3, retry), std::string(kSessionExpiredReply));
  EXPECT_EQ(s.read({"GET", "n"}, 5000), "$1\r\n1\r\n");
}

TEST(Store, LeastRecentlyUsedSessionIsEvictedBeyondTheBound) {
  StoreOptions o;
  o.sessions_max = 2;
  Store s(o);
  Client a{1}, b{2}, c{3};
  s.apply(1, entry(a.next(), {"SET", "k", "a"}));
  s.apply(2, entry(b.next(), {"SET", "k", "b"}));
  s.apply(3, entry(a.next(), {"SET", "k", "a"}));  // a is now the most recent
  s.apply(4, entry(c.next(), {"SET", "k", "c"}));  // evicts b
  EXPECT_EQ(s.sessions(), 2u);
  EXPECT_EQ(s.apply(5, entry(b.next(), {"SET", "k", "b"})), std::string(kSessionExpiredReply));
  EXPECT_NE(s.apply(6, entry(a.next(), {"SET", "k", "a"})), std::string(kSessionExpiredReply));
}

TEST(Store, SetNxXxAndExpiry) {
  Store s;
  Client c{1};
  EXPECT_EQ(s.apply(1, entry(c.next(1000), {"SET", "k", "v", "XX"})), "$-1\r\n");
  EXPECT_EQ(s.apply(2, entry(c.next(1000), {"SET", "k", "v", "NX", "EX", "10"})), "+OK\r\n");
  EXPECT_EQ(s.apply(3, entry(c.next(1000), {"SET", "k", "w", "NX"})), "$-1\r\n");
  EXPECT_EQ(s.read({"GET", "k"}, 10'999), "$1\r\nv\r\n");
  EXPECT_EQ(s.read({"GET", "k"}, 11'000), "$-1\r\n");
  // Expiry on the write path uses the log clock, identical on every replica.
  EXPECT_EQ(s.apply(4, entry(c.next(2000), {"SET", "t", "v", "PX", "100"})), "+OK\r\n");
  EXPECT_EQ(s.apply(5, entry(c.next(3000), {"SET", "t", "w", "XX"})), "$-1\r\n");
}

TEST(Store, BadInputIsRefusedBeforeTheLog) {
  EXPECT_FALSE(normalize_write({"SET", "k"}, 0).ok());
  EXPECT_FALSE(normalize_write({"SET", "k", "v", "EX", "abc"}, 0).ok());
  EXPECT_FALSE(normalize_write({"SET", "k", "v", "EX", "-1"}, 0).ok());
  EXPECT_FALSE(normalize_write({"SET", "k", "v", "NX", "XX"}, 0).ok());
  EXPECT_FALSE(normalize_write({"INCRBY", "k", "1.5"}, 0).ok());
  EXPECT_FALSE(normalize_write({"DECRBY", "k", "-9223372036854775808"}, 0).ok());
  EXPECT_FALSE(normalize_write({"MSET", "a", "1", "b"}, 0).ok());
  EXPECT_FALSE(normalize_write({"FLUSHALL"}, 0).ok());
}

TEST(Store, MalformedLogEntriesAreRefusedIdenticallyWithoutCrashing) {
  // Entries a buggy or hostile proposer could put in the log: each must be
  // answered with an error and change nothing, never panic the replica.
  Store s;
  Client c{9};
  WriteHeader h = c.next();
  const std::vector<std::string> bad_entries = {
      "",                                                  // empty
      std::string("\x01\x01", 2),                          // header cut short
      encode_write(h, {"FLUSHALL"}),                       // unknown command
      encode_write(h, {"SET", "k"}),                       // missing value
      encode_write(h, {"APPEND", "k"}),                    // missing value
      encode_write(h, {"INCRBY", "k", "x"}),               // non-numeric delta
      encode_write(h, {"SET", "k", "v", "PXAT", "soon"}),  // non-numeric expiry
      encode_write(h, {"SET", "k", "v", "EX", "10"}),      // not normalized
      encode_write(h, {"MSET", "a", "1", "b"}),            // odd pairs
      encode_write(h, {"set", "k", "v"}),                  // not normalized (case)
      encode_write(h, {"SET", "k", "v"}) + "x",            // trailing bytes
  };
  uint64_t index = 0;
  for (const std::string& e : bad_entries) {
    EXPECT_EQ(s.apply(++index, e).rfind("-ERR malformed entry", 0), 0u) << index;
  }
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.malformed_entries(), bad_entries.size());
  EXPECT_EQ(s.applied_index(), index);
  // A good entry after them applies normally.
  Client good{10};
  EXPECT_EQ(s.apply(++index, entry(good.next(), {"SET", "k", "v"})), "+OK\r\n");
}

TEST(Store, EveryNormalizedWriteIsWellFormed) {
  for (Argv argv : std::vector<Argv>{{"set", "k", "v", "ex", "5", "nx"},
                                     {"SET", "k", "v", "PX", "7", "XX"},
                                     {"set", "k", "v"},
                                     {"del", "a", "b"},
                                     {"append", "k", "v"},
                                     {"incr", "n"},
                                     {"decrby", "n", "3"},
                                     {"mset", "a", "1", "b", "2"}}) {
    auto n = normalize_write(argv, 1000);
    ASSERT_TRUE(n.ok()) << argv[0];
    EXPECT_TRUE(well_formed_write(*n)) << argv[0];
  }
}

TEST(Store, IncrOnNonIntegerAndOverflowLeaveValueUnchanged) {
  Store s;
  Client c{1};
  s.apply(1, entry(c.next(), {"SET", "k", "abc"}));
  EXPECT_EQ(s.apply(2, entry(c.next(), {"INCR", "k"})).substr(0, 4), "-ERR");
  s.apply(3, entry(c.next(), {"SET", "m", "9223372036854775807"}));
  EXPECT_EQ(s.apply(4, entry(c.next(), {"INCR", "m"})).substr(0, 4), "-ERR");
  EXPECT_EQ(s.read({"GET", "m"}, 0), "$19\r\n9223372036854775807\r\n");
}

TEST(Store, MultiKeyCommands) {
  Store s;
  Client c{1};
  EXPECT_EQ(s.apply(1, entry(c.next(), {"MSET", "a", "1", "b", "2"})), "+OK\r\n");
  EXPECT_EQ(s.read({"MGET", "a", "x", "b"}, 0), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
  EXPECT_EQ(s.read({"EXISTS", "a", "b", "x", "a"}, 0), ":3\r\n");
  EXPECT_EQ(s.apply(2, entry(c.next(), {"DEL", "a", "x"})), ":1\r\n");
  EXPECT_EQ(s.read({"DBSIZE"}, 0), ":1\r\n");
}

Store populated(Client& c, int keys) {
  Store s;
  uint64_t i = 0;
  for (int k = 0; k < keys; ++k) {
    s.apply(++i, entry(c.next(), {"SET", "key" + std::to_string(k), std::string(k % 50, 'v')}));
  }
  s.apply(++i, entry(c.next(), {"INCR", "counter"}));
  return s;
}

TEST(Store, SnapshotRestoresKeysSessionsAndAppliedIndex) {
  Client c{42};
  Store a = populated(c, 1000);
  std::stringstream ss;
  ASSERT_TRUE(a.write_snapshot(ss).ok());
  Store b;
  ASSERT_TRUE(b.restore(ss).ok());
  EXPECT_EQ(b.size(), a.size());
  EXPECT_EQ(b.applied_index(), a.applied_index());
  EXPECT_EQ(b.clock_ms(), a.clock_ms());
  for (int k = 0; k < 1000; k += 97) {
    Argv get = {"GET", "key" + std::to_string(k)};
    EXPECT_EQ(b.read(get, 0), a.read(get, 0));
  }
  // The session survives: a retry of the last INCR after restore is not re-applied.
  WriteHeader last;
  last.client = 42;
  last.seq = c.seq;
  last.ack_below = c.seq;
  last.now_ms = 1000;
  EXPECT_EQ(b.apply(b.applied_index() + 1, encode_write(last, {"INCRBY", "counter", "1"})),
            ":1\r\n");
  EXPECT_EQ(b.read({"GET", "counter"}, 0), "$1\r\n1\r\n");
}

TEST(Store, TornSnapshotIsRefusedAndStateKept) {
  Client c{1};
  Store a = populated(c, 100);
  std::stringstream ss;
  ASSERT_TRUE(a.write_snapshot(ss).ok());
  const std::string bytes = ss.str();
  Client d{2};
  Store b = populated(d, 3);
  for (size_t cut : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    std::stringstream torn(bytes.substr(0, cut));
    EXPECT_FALSE(b.restore(torn).ok()) << cut;
    EXPECT_EQ(b.size(), 4u);
  }
}

TEST(Store, CorruptSnapshotByteIsDetected) {
  Client c{1};
  Store a = populated(c, 50);
  std::stringstream ss;
  ASSERT_TRUE(a.write_snapshot(ss).ok());
  const std::string bytes = ss.str();
  int detected = 0;
  for (size_t pos = 0; pos < bytes.size(); pos += 7) {
    std::string bad = bytes;
    bad[pos] ^= 0x20;
    std::stringstream in(bad);
    Store b;
    if (!b.restore(in).ok()) ++detected;
  }
  EXPECT_EQ(detected, static_cast<int>((bytes.size() + 6) / 7));
}

// ---- batch entries (a connection's pipelined writes to one shard) ---------

// Pipelined headers: every write of the run is outstanding when it is sent.
std::vector<WriteHeader> pipelined(Client& c, size_t n) {
  std::vector<WriteHeader> hs;
  const uint64_t first = c.seq + 1;
  for (size_t i = 0; i < n; ++i) {
    WriteHeader h = c.next();
    h.ack_below = first;
    h.opens_session = true;
    hs.push_back(h);
  }
  return hs;
}

TEST(Store, BatchAppliesEveryWriteInPipelineOrderWithItsOwnReply) {
  Store s;
  Client c{11};
  auto hs = pipelined(c, 4);
  const std::string b =
      encode_batch({entry(hs[0], {"SET", "k", "a"}), entry(hs[1], {"APPEND", "k", "bc"}),
                    entry(hs[2], {"INCR", "k"}),  // not an integer
                    entry(hs[3], {"INCRBY", "n", "4"})});
  std::vector<std::string> replies;
  s.apply(1, b, replies);
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0], "+OK\r\n");
  EXPECT_EQ(replies[1], ":3\r\n");
  EXPECT_EQ(replies[2].substr(0, 4), "-ERR");
  EXPECT_EQ(replies[3], ":4\r\n");
  EXPECT_EQ(s.read({"GET", "k"}, 1000), "$3\r\nabc\r\n");
  EXPECT_EQ(s.applied_index(), 1u);
  // Each write keeps its own reply in the session (a retry of one finds it).
  EXPECT_EQ(s.reply_for(11, hs[1].seq).value(), ":3\r\n");
  uint64_t client = 0, seq = 0;
  ASSERT_TRUE(peek_session(b, client, seq));
  EXPECT_EQ(client, 11u);
  EXPECT_EQ(seq, hs[0].seq);
}

// A batch whose outcome was unknown is retried write by write; if the batch
// then commits after the retries, no write applies twice (and the other way).
TEST(Store, BatchCommittedAfterItsWritesWereRetriedAloneAppliesNothingTwice) {
  Store s;
  Client c{12};
  auto hs = pipelined(c, 3);
  const std::vector<std::string> writes = {
      entry(hs[0], {"INCR", "a"}), entry(hs[1], {"APPEND", "k", "x"}), entry(hs[2], {"INCR", "b"})};
  EXPECT_EQ(s.apply(1, writes[1]), ":1\r\n");  // the retries: out of order, some
  EXPECT_EQ(s.apply(2, writes[0]), ":1\r\n");
  EXPECT_EQ(s.apply(3, encode_batch(writes)), ":1\r\n:1\r\n:1\r\n");  // the late batch
  EXPECT_EQ(s.apply(4, writes[2]), ":1\r\n");  // the last retry: a duplicate now
  EXPECT_EQ(s.read({"GET", "k"}, 1000), "$1\r\nx\r\n");
  EXPECT_EQ(s.read({"GET", "a"}, 1000), "$1\r\n1\r\n");
  EXPECT_EQ(s.read({"GET", "b"}, 1000), "$1\r\n1\r\n");
}

TEST(Store, BatchRetriedWholeIsAppliedOnce) {
  Store s;
  Client c{13};
  auto hs = pipelined(c, 2);
  const std::string b =
      encode_batch({entry(hs[0], {"APPEND", "k", "a"}), entry(hs[1], {"APPEND", "k", "b"})});
  EXPECT_EQ(s.apply(1, b), ":1\r\n:2\r\n");
  EXPECT_EQ(s.apply(2, b), ":1\r\n:2\r\n");
  EXPECT_EQ(s.read({"GET", "k"}, 1000), "$2\r\nab\r\n");
}

TEST(Store, MalformedBatchIsRefusedWholeOnEveryReplica) {
  Client c{14};
  auto hs = pipelined(c, 2);
  const std::string good =
      encode_batch({entry(hs[0], {"SET", "x", "1"}), entry(hs[1], {"SET", "y", "2"})});
  std::vector<std::string> bad = {
      good.substr(0, good.size() - 1),  // torn
      good + "z",                       // trailing bytes
      // a batch of one write, and a batch inside a batch
      std::string(1, good[0]) + std::string(1, '\x01') + good.substr(2),
      encode_batch({good, entry(c.next(), {"SET", "z", "3"})}),
  };
  for (const std::string& e : bad) {
    Store s;
    std::vector<std::string> replies;
    s.apply(1, e, replies);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].substr(0, 4), "-ERR");
    EXPECT_EQ(s.size(), 0u);
    EXPECT_EQ(s.malformed_entries(), 1u);
    EXPECT_EQ(s.applied_index(), 1u);
  }
  std::vector<std::string_view> writes;
  EXPECT_TRUE(decode_batch(good, writes));
  EXPECT_EQ(writes.size(), 2u);
  for (const std::string& e : bad)
    EXPECT_FALSE(decode_batch(e, writes));
}

}  // namespace
}  // namespace nori::kv
