// Tests of the key-value linearizability checker and of nori-lincheck:
// agreement with every independently judged history in tests/lincheck/histories,
// hand-made adversarial histories, and thousands of random small histories
// cross-checked against a brute-force search over all orders.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/lincheck/checker.h"

namespace nori::lincheck {
namespace {

namespace fs = std::filesystem;

const fs::path kSharedDir = NORI_SHARED_HISTORIES_DIR;

Operation op(uint64_t client, OpKind kind, std::string key, std::string arg, int64_t call,
             int64_t ret, OpStatus status = OpStatus::kOk) {
  Operation o;
  o.client = client;
  o.kind = kind;
  o.key = std::move(key);
  if (kind == OpKind::kGet) {
    o.output = std::move(arg);
  } else {
    o.value = std::move(arg);
  }
  o.call_ns = call;
  o.return_ns = ret;
  o.status = status;
  return o;
}
Operation get(uint64_t c, std::string k, std::string out, int64_t call, int64_t ret,
              OpStatus s = OpStatus::kOk) {
  return op(c, OpKind::kGet, std::move(k), std::move(out), call, ret, s);
}
Operation put(uint64_t c, std::string k, std::string v, int64_t call, int64_t ret,
              OpStatus s = OpStatus::kOk) {
  return op(c, OpKind::kPut, std::move(k), std::move(v), call, ret, s);
}
Operation append(uint64_t c, std::string k, std::string v, int64_t call, int64_t ret,
                 OpStatus s = OpStatus::kOk) {
  return op(c, OpKind::kAppend, std::move(k), std::move(v), call, ret, s);
}

Verdict verdict_of(const History& h, uint64_t max_steps = 0) {
  return check_kv_history(h, CheckOptions{max_steps}).verdict;
}

// ---------------------------------------------------------------------------
// The shared histories, whose verdicts came from an independent checker.

struct Expected {
  std::string file;
  Verdict verdict;
};

std::vector<Expected> shared_verdicts() {
  std::vector<Expected> out;
  std::ifstream in(kSharedDir / "verdicts.tsv");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string file, verdict;
    fields >> file >> verdict;
    if (file.empty() || file == "file") continue;
    if (verdict == "linearizable") {
      out.push_back({file, Verdict::kLinearizable});
    } else if (verdict == "not-linearizable") {
      out.push_back({file, Verdict::kNotLinearizable});
    } else {
      ADD_FAILURE() << "unknown verdict \"" << verdict << "\" for " << file;
    }
  }
  return out;
}

void require_shared_dir() {
  ASSERT_TRUE(fs::exists(kSharedDir / "verdicts.tsv"))
      << "the shared histories are missing: expected " << (kSharedDir / "verdicts.tsv")
      << " (configure with -DNORI_SHARED_HISTORIES_DIR=<folder with verdicts.tsv>)";
}

TEST(SharedHistories, EveryVerdictAgreesWithTheIndependentChecker) {
  require_shared_dir();
  auto expected = shared_verdicts();
  ASSERT_GE(expected.size(), 10u) << "verdicts.tsv lists fewer histories than it should";
  size_t not_lin = 0;
  for (const Expected& e : expected) {
    SCOPED_TRACE(e.file);
    auto history = read_history_file((kSharedDir / e.file).string());
    ASSERT_TRUE(history.ok()) << history.error().to_string();
    CheckResult r = check_kv_history(*history);
    EXPECT_EQ(r.verdict, e.verdict) << r.summary();
    if (e.verdict == Verdict::kNotLinearizable) {
      ++not_lin;
      ASSERT_NE(r.first_problem(), nullptr);
      EXPECT_FALSE(r.first_problem()->explanation.empty());
    }
  }
  EXPECT_GE(not_lin, 3u);
}

int run_tool(const std::string& args) {
  std::string cmd = fmt::format("{} {} >/dev/null 2>&1", NORI_LINCHECK_TOOL, args);
  int status = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(status)) << cmd;
  return WEXITSTATUS(status);
}

TEST(LincheckTool, ExitStatusMatchesEveryVerdict) {
  require_shared_dir();
  for (const Expected& e : shared_verdicts()) {
    SCOPED_TRACE(e.file);
    EXPECT_EQ(run_tool((kSharedDir / e.file).string()),
              e.verdict == Verdict::kLinearizable ? 0 : 1);
  }
  // Several files: one bad history makes the run fail; stdin works too.
  EXPECT_EQ(run_tool(fmt::format("{} {}", (kSharedDir / "lin.jsonl").string(),
                                 (kSharedDir / "stale.jsonl").string())),
            1);
  EXPECT_EQ(run_tool(fmt::format("- < {}", (kSharedDir / "info-lin.jsonl").string())), 0);
}

TEST(LincheckTool, MalformedInputExitsWithTwo) {
  fs::path dir = fs::temp_directory_path() / fmt::format("lincheck-{}", ::getpid());
  fs::create_directories(dir);
  auto write = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  EXPECT_EQ(run_tool(write("garbage.jsonl", "{\"client\":0,\"op\":\n")), 2);
  EXPECT_EQ(run_tool(write("badop.jsonl",
                           "{\"client\":0,\"op\":\"cas\",\"key\":\"x\",\"call\":0,"
                           "\"return\":1,\"status\":\"ok\"}\n")),
            2);
  EXPECT_EQ(run_tool((dir / "does-not-exist.jsonl").string()), 2);
  EXPECT_EQ(run_tool("--no-such-flag"), 2);
  fs::remove_all(dir);
}

// ---------------------------------------------------------------------------
// Parsing.

TEST(HistoryParse, MissingGetOutputIsRejectedWithItsLine) {
  std::istringstream in(
      "{\"client\":0,\"op\":\"put\",\"key\":\"x\",\"value\":\"1\",\"call\":0,\"return\":5,"
      "\"status\":\"ok\"}\n\n"
      "{\"client\":0,\"op\":\"get\",\"key\":\"x\",\"call\":6,\"return\":9,\"status\":\"ok\"}\n");
  auto r = parse_history(in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind(), base::ErrorKind::kInvalidArgument);
  EXPECT_NE(r.error().message().find("line 3"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().message().find("output"), std::string::npos) << r.error().message();
}

TEST(HistoryParse, ReturnBeforeCallIsRejected) {
  auto r = parse_operation(
      R"({"client":0,"op":"put","key":"x","value":"1","call":10,"return":5,"status":"ok"})", 7);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("line 7"), std::string::npos);
}

TEST(HistoryParse, UnknownStatusAndMistypedFieldsAreRejected) {
  EXPECT_FALSE(
      parse_operation(
          R"({"client":0,"op":"get","key":"x","output":"","call":0,"return":1,"status":"maybe"})")
          .ok());
  EXPECT_FALSE(
      parse_operation(
          R"({"client":0,"op":"get","key":"x","output":"","call":"0","return":1,"status":"ok"})")
          .ok());
  EXPECT_FALSE(
      parse_operation(
          R"({"client":0,"op":"get","key":1,"output":"","call":0,"return":1,"status":"ok"})")
          .ok());
  EXPECT_FALSE(parse_operation("[1,2]").ok());
}

TEST(HistoryParse, ExtraFieldsAndDroppedOpFieldsAreTolerated) {
  auto info_get = parse_operation(
      R"({"client": 3, "op": "get", "key": "k", "call": 5, "status": "info", "error": "timeout", "return": 9})");
  ASSERT_TRUE(info_get.ok()) << info_get.error().to_string();
  auto fail_get =
      parse_operation(R"({"client":7,"op":"get","key":"k1","call":1,"return":2,"status":"fail"})");
  ASSERT_TRUE(fail_get.ok());
  EXPECT_EQ(fail_get->status, OpStatus::kFail);
}

TEST(HistoryParse, JsonLineRoundTrips) {
  History h = {put(1, "k\"ey", "v\n1", 10, 20), get(2, "k\"ey", "v\n1", 15, 30),
               append(3, "k", "x", 40, 41, OpStatus::kInfo), get(4, "k", "", 50, 60)};
  std::stringstream s;
  write_history(s, h);
  auto back = parse_history(s);
  ASSERT_TRUE(back.ok()) << back.error().to_string();
  ASSERT_EQ(back->size(), h.size());
  for (size_t i = 0; i < h.size(); ++i) {
    EXPECT_EQ(to_json_line((*back)[i]), to_json_line(h[i]));
  }
}

// ---------------------------------------------------------------------------
// Hand-made histories, each probing one rule.

TEST(Checker, StaleReadAfterCompletedPutIsRejected) {
  History h = {put(0, "x", "a", 0, 10), put(1, "x", "b", 20, 30), get(2, "x", "a", 40, 50)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, ReadConcurrentWithPutMaySeeEitherValue) {
  History old_value = {put(0, "x", "a", 0, 10), put(1, "x", "b", 20, 100),
                       get(2, "x", "a", 30, 40)};
  History new_value = {put(0, "x", "a", 0, 10), put(1, "x", "b", 20, 100),
                       get(2, "x", "b", 30, 40)};
  EXPECT_EQ(verdict_of(old_value), Verdict::kLinearizable);
  EXPECT_EQ(verdict_of(new_value), Verdict::kLinearizable);
}

TEST(Checker, NewValueThenOldValueInversionIsRejected) {
  // Both reads overlap the put of b, but once one read has returned b, a later
  // read may not return a again.
  History h = {put(0, "x", "a", 0, 10), put(1, "x", "b", 20, 100), get(2, "x", "b", 30, 40),
               get(3, "x", "a", 50, 60)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, ReadOfAValueWrittenOnlyLaterIsRejected) {
  History h = {get(0, "x", "a", 0, 10), put(1, "x", "a", 11, 20)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, TouchingIntervalsCountAsConcurrent) {
  // The get is called at the instant the put returns: either order is allowed.
  History h = {put(0, "x", "a", 0, 10), get(1, "x", "", 10, 20)};
  EXPECT_EQ(verdict_of(h), Verdict::kLinearizable);
  History apart = {put(0, "x", "a", 0, 10), get(1, "x", "", 11, 20)};
  EXPECT_EQ(verdict_of(apart), Verdict::kNotLinearizable);
}

TEST(Checker, AppendsMustApplyInRealTimeOrder) {
  History in_order = {append(0, "x", "1", 0, 10), append(1, "x", "2", 20, 30),
                      get(2, "x", "12", 40, 50)};
  History reversed = {append(0, "x", "1", 0, 10), append(1, "x", "2", 20, 30),
                      get(2, "x", "21", 40, 50)};
  History concurrent = {append(0, "x", "1", 0, 30), append(1, "x", "2", 5, 25),
                        get(2, "x", "21", 40, 50)};
  EXPECT_EQ(verdict_of(in_order), Verdict::kLinearizable);
  EXPECT_EQ(verdict_of(reversed), Verdict::kNotLinearizable);
  EXPECT_EQ(verdict_of(concurrent), Verdict::kLinearizable);
}

TEST(Checker, DuplicateAppendIsRejected) {
  // An append applied twice (a retried proposal applied again) shows up as a
  // doubled suffix.
  History h = {append(0, "x", "a", 0, 10), get(1, "x", "aa", 20, 30)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, SearchBacktracksPastAGreedyDeadEnd) {
  // Greedy order (put a first, as it is called first) fails: the read of ""
  // must go before both puts, and the read of "a" after put a but before put
  // b's effect is impossible unless b goes first.
  History h = {put(0, "x", "a", 0, 100), put(1, "x", "b", 1, 100), get(2, "x", "", 2, 100),
               get(3, "x", "b", 3, 100), get(4, "x", "a", 101, 110)};
  EXPECT_EQ(verdict_of(h), Verdict::kLinearizable);
  History bad = {put(0, "x", "a", 0, 100), put(1, "x", "b", 1, 100),   get(2, "x", "a", 2, 100),
                 get(3, "x", "b", 3, 100), get(4, "x", "a", 101, 110), get(5, "x", "b", 111, 120)};
  EXPECT_EQ(verdict_of(bad), Verdict::kNotLinearizable);
}

TEST(Checker, InfoWriteMayTakeEffectLongAfterItTimedOut) {
  History h = {put(0, "x", "a", 0, 10), put(1, "x", "b", 20, 30, OpStatus::kInfo),
               get(2, "x", "a", 1000, 1010), get(2, "x", "b", 2000, 2010)};
  EXPECT_EQ(verdict_of(h), Verdict::kLinearizable);
}

TEST(Checker, InfoWriteCannotTakeEffectBeforeItsCall) {
  History h = {get(0, "x", "b", 0, 10), put(1, "x", "b", 20, 30, OpStatus::kInfo)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, InfoWriteCannotBeUndone) {
  // Once a read saw the info write, the older value cannot come back.
  History h = {put(1, "x", "b", 20, 30, OpStatus::kInfo), get(2, "x", "b", 40, 50),
               get(2, "x", "", 60, 70)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, InfoWriteThatIsNeverSeenIsFine) {
  History h = {put(0, "x", "a", 0, 10), append(1, "x", "zz", 20, 30, OpStatus::kInfo),
               get(2, "x", "a", 40, 50)};
  EXPECT_EQ(verdict_of(h), Verdict::kLinearizable);
}

TEST(Checker, FailedWriteIsNeverVisible) {
  History h = {put(0, "x", "ghost", 0, 10, OpStatus::kFail), get(1, "x", "ghost", 20, 30)};
  EXPECT_EQ(verdict_of(h), Verdict::kNotLinearizable);
}

TEST(Checker, InfoAndFailedReadsCarryNoInformation) {
  History h = {put(0, "x", "a", 0, 10), get(1, "x", "nonsense", 20, 30, OpStatus::kInfo),
               get(1, "x", "other", 40, 50, OpStatus::kFail), get(1, "x", "a", 60, 70)};
  CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable);
  EXPECT_EQ(r.ops_dropped, 2u);
}

TEST(Checker, KeysAreIndependentRegisters) {
  History h = {put(0, "x", "a", 0, 10), get(1, "y", "", 20, 30), get(1, "x", "a", 40, 50),
               put(2, "y", "b", 60, 70), get(0, "y", "a", 80, 90)};
  CheckResult r = check_kv_history(h);
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
  ASSERT_NE(r.first_problem(), nullptr);
  EXPECT_EQ(r.first_problem()->key, "y");
  EXPECT_NE(r.summary().find("key \"y\""), std::string::npos) << r.summary();
}

TEST(Checker, EmptyHistoryIsLinearizable) {
  EXPECT_EQ(verdict_of({}), Verdict::kLinearizable);
}

// n fully concurrent puts of distinct values, then two reads, one after the
// other, of two different ones: impossible, since the value cannot change
// once every put has returned. But any order of the puts ending with v3 gets
// past the first read, so only memoisation keeps the refutation from trying
// (n-1)! orders (2^n sets x n+1 values at most).
History concurrent_writers(int n) {
  History h;
  for (int i = 0; i < n; ++i)
    h.push_back(put(i, "x", fmt::format("v{};", i), i, 1000));
  h.push_back(get(98, "x", "v3;", 2000, 2010));
  h.push_back(get(99, "x", "v5;", 2020, 2030));
  return h;
}

TEST(Checker, MemoisationRefutesManyConcurrentWritersWithinBudget) {
  // 13 writers: 12! = 4.8e8 orders without memoisation.
  CheckResult r = check_kv_history(concurrent_writers(13), CheckOptions{5'000'000});
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable) << r.summary();
}

TEST(Checker, StepBudgetGivesUnknownNotAGuess) {
  History h = concurrent_writers(13);
  CheckResult r = check_kv_history(h, CheckOptions{1000});
  EXPECT_EQ(r.verdict, Verdict::kUnknown) << r.summary();
  // A refutation elsewhere still wins over an unknown key.
  h.push_back(put(0, "y", "a", 0, 10));
  h.push_back(get(1, "y", "", 20, 30));
  EXPECT_EQ(check_kv_history(h, CheckOptions{1000}).verdict, Verdict::kNotLinearizable);
}

TEST(Checker, UnobservedInfoWritesDoNotBlowUpTheSearch) {
  // 40 timed-out appends nobody ever reads, then a stale read: without
  // pruning, every subset of the 40 is a distinct state to refute.
  History h = {put(0, "x", "a", 0, 10), put(0, "x", "b", 20, 30)};
  for (int i = 0; i < 40; ++i) {
    h.push_back(append(i + 1, "x", fmt::format("z{};", i), 40 + i, 50 + i, OpStatus::kInfo));
  }
  h.push_back(get(99, "x", "a", 200, 210));
  CheckResult r = check_kv_history(h, CheckOptions{100'000});
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable) << r.summary();
  EXPECT_EQ(r.ops_dropped, 40u);
}

TEST(Checker, InfoPutSeenOnlyThroughALaterAppendIsKept) {
  // The info put's value shows up only as the prefix of what a later append
  // produced: the put took effect and must not be pruned.
  History h = {put(0, "x", "p", 0, 10, OpStatus::kInfo), append(1, "x", "q", 20, 30),
               get(2, "x", "pq", 40, 50)};
  EXPECT_EQ(verdict_of(h), Verdict::kLinearizable);
  History late = {put(0, "x", "p", 0, 10, OpStatus::kInfo), append(1, "x", "q", 20, 30),
                  get(2, "x", "pq", 40, 50), get(2, "x", "q", 60, 70)};
  EXPECT_EQ(verdict_of(late), Verdict::kNotLinearizable);
}

TEST(Checker, BurstOfUnknownAppendsThatTookEffectIsOrderedQuickly) {
  // 16 appends time out (a new leader was waiting out its lease) and then
  // all commit in one order; reads then show that order. Any other order of
  // the 16 must be cut early, not enumerated (16! orders).
  History h = {put(0, "x", "s;", 0, 10)};
  std::string all = "s;";
  for (int i = 0; i < 16; ++i) {
    std::string v = fmt::format("a{};", (i * 7) % 16);
    h.push_back(append(i + 1, "x", v, 20 + i, 30 + i, OpStatus::kInfo));
    all += v;
  }
  h.push_back(get(99, "x", all, 1000, 1010));
  CheckResult ok = check_kv_history(h, CheckOptions{100'000});
  EXPECT_EQ(ok.verdict, Verdict::kLinearizable) << ok.summary();
  // The same with the last read missing one of them in the middle.
  std::string broken = all;
  broken.erase(broken.find("a7;"), 3);
  h.push_back(get(99, "x", broken, 1100, 1110));
  CheckResult bad = check_kv_history(h, CheckOptions{1'000'000});
  EXPECT_EQ(bad.verdict, Verdict::kNotLinearizable) << bad.summary();
}

TEST(Checker, AppendsThatAPutWouldEraseAreNotOrderedOneByOne) {
  // An unknown-outcome put and 11 unknown-outcome appends, all concurrent;
  // a read shows the put followed by all 11 appends. Every order of appends
  // placed before the put leads to a value nobody reads: they must collapse
  // into one state, not 11! of them.
  History h = {put(0, "x", "p;", 5, 15, OpStatus::kInfo)};
  std::string all = "p;";
  for (int i = 0; i < 11; ++i) {
    std::string v = fmt::format("a{};", (i * 5) % 11);
    h.push_back(append(i + 1, "x", v, i, 20 + i, OpStatus::kInfo));
    all += v;
  }
  h.push_back(get(99, "x", all, 1000, 1010));
  h.push_back(get(99, "x", all + "z;", 1020, 1030));  // impossible: nobody appended z
  CheckResult r = check_kv_history(h, CheckOptions{2'000'000});
  EXPECT_EQ(r.verdict, Verdict::kNotLinearizable) << r.summary();
  h.pop_back();
  EXPECT_EQ(check_kv_history(h, CheckOptions{2'000'000}).verdict, Verdict::kLinearizable);
}

// ---------------------------------------------------------------------------
// Random small histories against a brute-force oracle.

// Tries every order of the kept operations that respects real time (a before
// b whenever a returned strictly before b was called; info returns never).
bool brute_force_linearizable(const History& h) {
  std::map<std::string, std::vector<const Operation*>> by_key;
  for (const Operation& o : h) {
    if (o.status == OpStatus::kFail) continue;
    if (o.status == OpStatus::kInfo && o.kind == OpKind::kGet) continue;
    by_key[o.key].push_back(&o);
  }
  for (auto& [key, ops] : by_key) {
    std::vector<int> perm(ops.size());
    for (size_t i = 0; i < perm.size(); ++i)
      perm[i] = static_cast<int>(i);
    bool found = false;
    do {
      bool ok = true;
      for (size_t i = 0; ok && i < perm.size(); ++i) {
        for (size_t j = i + 1; ok && j < perm.size(); ++j) {
          const Operation& later = *ops[perm[i]];
          const Operation& earlier = *ops[perm[j]];
          if (earlier.status == OpStatus::kOk && earlier.return_ns < later.call_ns) ok = false;
        }
      }
      std::string value;
      for (size_t i = 0; ok && i < perm.size(); ++i) {
        const Operation& o = *ops[perm[i]];
        if (o.kind == OpKind::kGet) {
          ok = o.output == value;
        } else if (o.kind == OpKind::kPut) {
          value = o.value;
        } else {
          value += o.value;
        }
      }
      found = ok;
    } while (!found && std::next_permutation(perm.begin(), perm.end()));
    if (!found) return false;
  }
  return true;
}

History random_history(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> n_ops(1, 7), kind(0, 2), time(0, 30), len(0, 12), key(0, 1),
      status(0, 9), value(0, 1);
  static const char* kOutputs[] = {"", "a", "b", "ab", "ba", "aa", "bb", "aab", "abb"};
  History h;
  int n = n_ops(rng);
  for (int i = 0; i < n; ++i) {
    int t = time(rng);
    int s = status(rng);
    OpStatus st = s == 0 ? OpStatus::kInfo : s == 1 ? OpStatus::kFail : OpStatus::kOk;
    std::string k = key(rng) ? "x" : "y";
    int kd = kind(rng);
    if (kd == 0) {
      h.push_back(get(i, k, kOutputs[rng() % std::size(kOutputs)], t, t + len(rng), st));
    } else {
      std::string v = value(rng) ? "a" : "b";
      h.push_back(op(i, kd == 1 ? OpKind::kPut : OpKind::kAppend, k, v, t, t + len(rng), st));
    }
  }
  return h;
}

TEST(Checker, RandomSmallHistoriesAgreeWithBruteForce) {
  std::mt19937_64 rng(20261127);
  int lin = 0, not_lin = 0;
  for (int iter = 0; iter < NORI_LINCHECK_RANDOM_HISTORIES; ++iter) {
    History h = random_history(rng);
    bool expected = brute_force_linearizable(h);
    Verdict got = verdict_of(h);
    ASSERT_EQ(got, expected ? Verdict::kLinearizable : Verdict::kNotLinearizable)
        << "iteration " << iter << ":\n"
        << [&] {
             std::ostringstream s;
             write_history(s, h);
             return s.str();
           }();
    (expected ? lin : not_lin)++;
  }
  // Both verdicts must be common, or the comparison proves little.
  EXPECT_GT(lin, NORI_LINCHECK_RANDOM_HISTORIES / 10);
  EXPECT_GT(not_lin, NORI_LINCHECK_RANDOM_HISTORIES / 10);
}

}  // namespace
}  // namespace nori::lincheck
