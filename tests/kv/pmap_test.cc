// kv::PersistentMap: a randomized model test against std::unordered_map with
// snapshots taken at random points (each must keep the contents it had then,
// whatever the live map does afterwards), forced hash collisions and
// worst-case trie depth, erase down to empty, in-place writes when nothing is
// shared, and a snapshot read on another thread while the live map is
// written (run under TSan and ASan: label tsan).
#include "kv/pmap.h"

#include <gtest/gtest.h>

#include <sstream>

#include "kv/store.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace nori::kv {
namespace {

struct Val {
  std::string data;
  uint64_t expire_at_ms = 0;
  bool operator==(const Val&) const = default;
};

// 256 distinct hashes: most keys share their full 64-bit hash with others.
struct CollidingHash {
  uint64_t operator()(std::string_view k) const { return base::xxh3_64(k) & 0xFF; }
};
// Hashes equal in every digit but the last (bits 62-63), and only 4 of them:
// every key sits at the deepest level, in collision nodes.
struct DeepHash {
  uint64_t operator()(std::string_view k) const { return (base::xxh3_64(k) & 3) << 62; }
};

using Model = std::unordered_map<std::string, Val>;

// The map holds exactly the model: same size, every key found with its
// value, and iteration visits every key exactly once.
template <class M>
void expect_equal(const M& map, const Model& model, const std::string& where) {
  ASSERT_EQ(map.size(), model.size()) << where;
  for (const auto& [k, v] : model) {
    const Val* got = map.find(k);
    ASSERT_NE(got, nullptr) << where << ": missing " << k;
    ASSERT_EQ(*got, v) << where << ": value of " << k;
  }
  std::unordered_set<std::string> seen;
  size_t n = 0;
  for (const auto& [k, v] : map) {
    ++n;
    ASSERT_TRUE(seen.insert(k).second) << where << ": iteration visited " << k << " twice";
    auto it = model.find(k);
    ASSERT_NE(it, model.end()) << where << ": iteration found stray key " << k;
    ASSERT_EQ(v, it->second) << where;
  }
  ASSERT_EQ(n, model.size()) << where;
}

// Random writes to a live map and to the model, with snapshots (map and
// model copied at the same point) taken at random points and checked at
// random later points and at the end.
// kRootBits: the default wide root, or a 32-slot one so that a few thousand
// keys already make a trie several levels deep.
template <class Hash, unsigned kRootBits = 12>
void run_model(uint32_t seed, int ops, int key_space) {
  using Map = PersistentMap<Val, Hash, kRootBits>;
  std::mt19937_64 rng(seed);
  Map live;
  Model model;
  std::vector<std::pair<Map, Model>> snaps;
  auto key = [&] { return "k" + std::to_string(rng() % static_cast<uint64_t>(key_space)); };
  for (int i = 0; i < ops; ++i) {
    const int op = static_cast<int>(rng() % 100);
    const std::string k = key();
    if (op < 35) {
      Val v{"v" + std::to_string(i), rng() % 3};
      auto [p, inserted] = live.insert_or_assign(k, v);
      ASSERT_EQ(inserted, model.count(k) == 0);
      ASSERT_EQ(*p, v);
      model[k] = v;
    } else if (op < 50) {
      auto [p, inserted] = live.try_emplace(k, Val{"nx" + std::to_string(i), 0});
      auto [mit, minserted] = model.try_emplace(k, Val{"nx" + std::to_string(i), 0});
      ASSERT_EQ(inserted, minserted);
      ASSERT_EQ(*p, mit->second);
    } else if (op < 75) {
      ASSERT_EQ(live.erase(k), model.erase(k) == 1) << k;
    } else if (op < 90) {
      Val* p = live.find_mut(k);
      auto it = model.find(k);
      ASSERT_EQ(p != nullptr, it != model.end());
      if (p != nullptr) {
        p->data += "+";
        it->second.data += "+";
      }
    } else if (op < 95) {
      const Val* p = live.find(k);
      auto it = model.find(k);
      ASSERT_EQ(p != nullptr, it != model.end());
      if (p != nullptr) ASSERT_EQ(*p, it->second);
    } else if (op < 98) {
      snaps.emplace_back(live.snapshot(), model);
      if (snaps.size() > 8) snaps.erase(snaps.begin());  // dropped out of order
    } else if (!snaps.empty()) {
      const size_t s = rng() % snaps.size();
      expect_equal(snaps[s].first, snaps[s].second, "snapshot during the run");
      // A snapshot is a map too: writing it must not disturb the live map.
      if (rng() % 2 == 0) {
        snaps[s].first.insert_or_assign(k, Val{"snapwrite", 0});
        snaps[s].second[k] = Val{"snapwrite", 0};
      }
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
  expect_equal(live, model, "live map");
  for (size_t s = 0; s < snaps.size(); ++s)
    expect_equal(snaps[s].first, snaps[s].second, "snapshot " + std::to_string(s));
  const auto st = live.stats();
  EXPECT_LE(st.max_depth, Map::kBranchLevels);
  EXPECT_EQ(st.leaves, model.size());
}

TEST(PersistentMap, SnapshotUnchangedByLaterWrites) {
  for (uint32_t seed = 1; seed <= 2; ++seed) {
    run_model<PmapHash>(seed, 15000, 2000);
    if (::testing::Test::HasFatalFailure()) return;
    run_model<PmapHash, 5>(seed, 15000, 2000);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(PersistentMap, SnapshotUnchangedByLaterWritesWithHashCollisions) {
  for (uint32_t seed = 1; seed <= 2; ++seed) {
    run_model<CollidingHash>(seed, 10000, 1500);
    if (::testing::Test::HasFatalFailure()) return;
    run_model<CollidingHash, 5>(seed, 10000, 1500);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(PersistentMap, SnapshotUnchangedByLaterWritesAtWorstCaseDepth) {
  for (uint32_t seed = 1; seed <= 2; ++seed) {
    run_model<DeepHash>(seed, 4000, 200);
    if (::testing::Test::HasFatalFailure()) return;
    run_model<DeepHash, 5>(seed, 4000, 200);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

template <class Hash, unsigned kRootBits = 12>
void erase_down_to_empty(int keys) {
  PersistentMap<Val, Hash, kRootBits> m;
  for (int i = 0; i < keys; ++i)
    m.insert_or_assign("key:" + std::to_string(i), Val{std::to_string(i), 0});
  auto snap = m.snapshot();
  EXPECT_GT(m.stats().branches, 0u);
  std::mt19937 rng(7);
  std::vector<int> order(static_cast<size_t>(keys));
  for (int i = 0; i < keys; ++i)
    order[static_cast<size_t>(i)] = i;
  std::shuffle(order.begin(), order.end(), rng);
  for (int i : order) {
    ASSERT_TRUE(m.erase("key:" + std::to_string(i))) << i;
    ASSERT_FALSE(m.erase("key:" + std::to_string(i))) << i;
  }
  EXPECT_EQ(m.size(), 0u);
  EXPECT_TRUE(m.empty());
  EXPECT_TRUE(m.begin() == m.end());
  const auto st = m.stats();
  EXPECT_EQ(st.branches + st.leaves + st.collisions, 0u) << "an empty map holds no nodes";
  EXPECT_EQ(m.find("key:0"), nullptr);
  // The snapshot still holds everything.
  ASSERT_EQ(snap.size(), static_cast<size_t>(keys));
  for (int i = 0; i < keys; ++i)
    ASSERT_NE(snap.find("key:" + std::to_string(i)), nullptr) << i;
  // And the emptied map works again.
  m.insert_or_assign("again", Val{"x", 0});
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.find("again")->data, "x");
}

TEST(PersistentMap, EraseDownToEmptyFreesEveryNode) {
  erase_down_to_empty<PmapHash>(5000);
  erase_down_to_empty<PmapHash, 5>(5000);
}

TEST(PersistentMap, EraseDownToEmptyFreesEveryNodeWithHashCollisions) {
  erase_down_to_empty<CollidingHash>(2000);
  erase_down_to_empty<CollidingHash, 5>(2000);
  erase_down_to_empty<DeepHash>(100);
}

TEST(PersistentMap, EraseFoldsBranchesBackToTheShapeOfFewerKeys) {
  PersistentMap<Val, PmapHash, 5> m;  // a 32-slot root: 3000 keys go 3 levels deep
  m.insert_or_assign("a", Val{"1", 0});
  const auto one = m.stats();
  for (int i = 0; i < 3000; ++i)
    m.insert_or_assign("x" + std::to_string(i), Val{"", 0});
  EXPECT_GE(m.stats().max_depth, 3u);
  for (int i = 0; i < 3000; ++i)
    ASSERT_TRUE(m.erase("x" + std::to_string(i)));
  const auto st = m.stats();
  EXPECT_EQ(st.branches, one.branches) << "emptied sub-branches were not folded";
  EXPECT_EQ(st.leaves, 1u);
}

TEST(PersistentMap, WriteWithoutSnapshotMutatesInPlace) {
  PersistentMap<Val> m;
  for (int i = 0; i < 2000; ++i)
    m.insert_or_assign("key:" + std::to_string(i), Val{"v", 0});
  const Val* before = m.find("key:42");
  EXPECT_EQ(m.find_mut("key:42"), before);
  auto [p, inserted] = m.insert_or_assign("key:42", Val{"w", 0});
  EXPECT_FALSE(inserted);
  EXPECT_EQ(p, before) << "an unshared leaf was reallocated";
  auto [q, ins2] = m.try_emplace("key:42", Val{"nx", 0});
  EXPECT_FALSE(ins2);
  EXPECT_EQ(q, before);
  EXPECT_EQ(q->data, "w");
}

TEST(PersistentMap, WriteAfterSnapshotCopiesOnlyTheWrittenPath) {
  PersistentMap<Val> m;
  const int n = 5000;
  for (int i = 0; i < n; ++i)
    m.insert_or_assign("key:" + std::to_string(i), Val{"v", 0});
  auto snap = m.snapshot();
  EXPECT_TRUE(m.shares_root_with(snap)) << "snapshot() copied the root";
  m.find_mut("key:42")->data = "changed";
  EXPECT_FALSE(m.shares_root_with(snap));
  EXPECT_EQ(snap.find("key:42")->data, "v");
  EXPECT_EQ(m.find("key:42")->data, "changed");
  int distinct = 0;
  for (int i = 0; i < n; ++i) {
    const std::string k = "key:" + std::to_string(i);
    distinct += m.find(k) != snap.find(k);
  }
  EXPECT_EQ(distinct, 1) << "leaves off the written path were copied";
  // Dropping the snapshot makes every node exclusive again: writes go back
  // to being in place.
  snap = PersistentMap<Val>();
  const Val* before = m.find("key:7");
  EXPECT_EQ(m.find_mut("key:7"), before);
  EXPECT_EQ(m.insert_or_assign("key:7", Val{"again", 0}).first, before);
}

TEST(PersistentMap, AbsentKeyLookupsForWriteCopyNothing) {
  PersistentMap<Val> m;
  for (int i = 0; i < 100; ++i)
    m.insert_or_assign("key:" + std::to_string(i), Val{"v", 0});
  auto snap = m.snapshot();
  EXPECT_EQ(m.find_mut("absent"), nullptr);
  EXPECT_FALSE(m.erase("absent"));
  EXPECT_TRUE(m.shares_root_with(snap)) << "a miss path-copied the root";
}

TEST(PersistentMap, CopiesAndMovesKeepTheirOwnContents) {
  PersistentMap<Val> a;
  a.insert_or_assign("k", Val{"a", 0});
  PersistentMap<Val> b = a;  // copy: shared
  PersistentMap<Val> c = std::move(b);
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  c.insert_or_assign("k", Val{"c", 0});
  PersistentMap<Val>& alias = a;
  a = alias;  // self-assignment keeps the contents
  EXPECT_EQ(a.find("k")->data, "a");
  EXPECT_EQ(c.find("k")->data, "c");
  a = c;
  EXPECT_EQ(a.find("k")->data, "c");
  a.clear();
  EXPECT_EQ(c.find("k")->data, "c");
  EXPECT_EQ(a.find("k"), nullptr);
}

TEST(PersistentMap, LargeMapDestroysWithBoundedRecursion) {
  // Depth is bounded by the hash width, not the size: the worst-case hash
  // puts every key at the deepest level.
  PersistentMap<Val, DeepHash> deep;
  for (int i = 0; i < 300; ++i)
    deep.insert_or_assign(std::to_string(i), Val{});
  EXPECT_EQ(deep.stats().max_depth, (PersistentMap<Val, DeepHash>::kBranchLevels));
  PersistentMap<Val> big;
  for (int i = 0; i < 200000; ++i)
    big.insert_or_assign(std::to_string(i), Val{});
  EXPECT_LE(big.stats().max_depth, 10u);  // ~log32(n) + a few: digits are random
}

// The shape of a shard snapshot: the reactor thread keeps writing the live
// map while the snapshot thread iterates and verifies a snapshot, then drops
// it (its last reference to many nodes) while the writes go on. TSan checks
// the reference counts' ordering: the writer must never write a node in
// place while the reader can still reach it.
TEST(PersistentMap, SnapshotReadOnAnotherThreadWhileLiveMapWrites) {
  PersistentMap<Val> live;
  Model model;
  std::mt19937_64 rng(99);
  const int keys = 4000;
  for (int i = 0; i < keys; ++i) {
    Val v{"v" + std::to_string(i), 0};
    live.insert_or_assign("key:" + std::to_string(i), v);
    model["key:" + std::to_string(i)] = v;
  }
  for (int round = 0; round < 4; ++round) {
    std::atomic<bool> reader_done{false};
    std::atomic<size_t> reader_mismatches{0};
    std::thread reader(
        [snap = live.snapshot(), expect = model, &reader_done, &reader_mismatches]() mutable {
          for (int pass = 0; pass < 3; ++pass) {
            size_t n = 0;
            for (const auto& [k, v] : snap) {
              auto it = expect.find(k);
              if (it == expect.end() || !(it->second == v)) ++reader_mismatches;
              ++n;
            }
            if (n != expect.size()) ++reader_mismatches;
            for (const auto& [k, v] : expect) {
              const Val* got = snap.find(k);
              if (got == nullptr || !(*got == v)) ++reader_mismatches;
            }
          }
          snap = PersistentMap<Val>();  // the last reference to the old nodes, on this thread
          reader_done.store(true, std::memory_order_release);
        });
    // Write until the reader has finished and a while after (so that writes
    // land on nodes the reader just released).
    int after = 0;
    for (int i = 0; after < 2000; ++i) {
      if (reader_done.load(std::memory_order_acquire)) ++after;
      const std::string k = "key:" + std::to_string(rng() % (keys + keys / 4));
      switch (rng() % 4) {
        case 0:
          live.insert_or_assign(k, Val{"r" + std::to_string(i), 0});
          model[k] = Val{"r" + std::to_string(i), 0};
          break;
        case 1:
          live.erase(k);
          model.erase(k);
          break;
        case 2:
          if (Val* p = live.find_mut(k)) {
            p->data += "+";
            model[k].data += "+";
          }
          break;
        default:
          live.try_emplace(k, Val{"nx", 0});
          model.try_emplace(k, Val{"nx", 0});
          break;
      }
    }
    reader.join();
    EXPECT_EQ(reader_mismatches.load(), 0u) << "round " << round;
    expect_equal(live, model, "live map after round " + std::to_string(round));
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// The Store's use of the map end to end: a clone (what capture_snapshot
// hands to the node's snapshot thread) is written out on another thread while
// the Store applies overwrites, deletes, APPENDs and INCRBYs to the same keys.
// The bytes must be those of a clone written at the capture point on this
// thread, and they must restore to the state of that point.
TEST(PersistentMapInStore, CloneWrittenOnAnotherThreadWhileStoreApplies) {
  Store live;
  uint64_t index = 0, seq = 0;
  auto apply = [&](std::vector<std::string> argv) {
    WriteHeader h{7, ++seq, seq, 1000, seq == 1};
    return live.apply(++index, encode_write(h, argv));
  };
  const int keys = 3000;
  for (int i = 0; i < keys; ++i)
    apply({"SET", "key:" + std::to_string(i), "v" + std::to_string(i)});
  apply({"SET", "n", "10"});
  std::string expected;
  {
    std::ostringstream out;
    ASSERT_TRUE(live.clone()->write_snapshot(out).ok());
    expected = out.str();
  }
  std::string got;
  bool written = false;
  std::thread writer([clone = live.clone(), &got, &written]() mutable {
    std::ostringstream out;
    written = clone->write_snapshot(out).ok();
    got = out.str();
    clone.reset();  // the snapshot thread drops the last reference
  });
  for (int i = 0; i < keys; ++i) {
    const std::string k = "key:" + std::to_string(i);
    switch (i % 4) {
      case 0:
        apply({"SET", k, "overwritten"});
        break;
      case 1:
        apply({"DEL", k});
        break;
      case 2:
        apply({"APPEND", k, "+tail"});
        break;
      default:
        apply({"INCRBY", "n", "1"});
        break;
    }
  }
  writer.join();
  ASSERT_TRUE(written);
  EXPECT_EQ(got, expected) << "the clone changed while it was written";
  Store restored;
  std::istringstream in(got);
  ASSERT_TRUE(restored.restore(in).ok());
  EXPECT_EQ(restored.size(), static_cast<size_t>(keys) + 1);
  EXPECT_EQ(restored.read({"GET", "key:0"}, 1000), "$2\r\nv0\r\n");
  EXPECT_EQ(restored.read({"GET", "key:1"}, 1000), "$2\r\nv1\r\n");
  EXPECT_EQ(restored.read({"GET", "key:2"}, 1000), "$2\r\nv2\r\n");
  EXPECT_EQ(restored.read({"GET", "n"}, 1000), "$2\r\n10\r\n");
  // And the live Store has every write.
  EXPECT_EQ(live.read({"GET", "key:0"}, 1000), "$11\r\noverwritten\r\n");
  EXPECT_EQ(live.read({"GET", "key:1"}, 1000), "$-1\r\n");
  EXPECT_EQ(live.read({"GET", "key:2"}, 1000), "$7\r\nv2+tail\r\n");
  EXPECT_EQ(live.read({"GET", "n"}, 1000), "$3\r\n760\r\n");
  EXPECT_EQ(live.size(), static_cast<size_t>(keys) - keys / 4 + 1);
}

}  // namespace
}  // namespace nori::kv
