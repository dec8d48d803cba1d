#include "kv/resp.h"

#include <gtest/gtest.h>

#include "kv/commands.h"

namespace nori::kv {
namespace {

using Argv = std::vector<std::string>;

std::vector<Argv> parse_all(RequestParser& p, std::string_view in, bool* failed = nullptr) {
  std::vector<Argv> out;
  if (failed) *failed = false;
  if (!p.feed(in).ok()) {
    if (failed) *failed = true;
    return out;
  }
  Argv argv;
  while (true) {
    auto r = p.next(argv);
    if (!r.ok()) {
      if (failed) *failed = true;
      break;
    }
    if (!*r) break;
    out.push_back(argv);
  }
  return out;
}

TEST(Resp, PipelinedCommandsComeOutInOrder) {
  RequestParser p;
  auto cmds = parse_all(p,
                        "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n*2\r\n$"
                        "3\r\nGET\r\n$1\r\nk\r\n");
  ASSERT_EQ(cmds.size(), 3u);
  EXPECT_EQ(cmds[0], Argv({"PING"}));
  EXPECT_EQ(cmds[1], Argv({"SET", "k", "vv"}));
  EXPECT_EQ(cmds[2], Argv({"GET", "k"}));
}

TEST(Resp, CommandSplitAtEveryByteIsParsedOnce) {
  const std::string in = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n";
  RequestParser p;
  std::vector<Argv> got;
  for (char c : in) {
    auto part = parse_all(p, std::string_view(&c, 1));
    got.insert(got.end(), part.begin(), part.end());
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], Argv({"SET", "key", "va\r\nl"}));  // binary-safe bulk
  EXPECT_EQ(p.buffered_bytes(), 0u);
}

TEST(Resp, InlineCommandIsSplitOnSpaces) {
  RequestParser p;
  auto cmds = parse_all(p, "SET  a\tb\r\nPING\n");
  ASSERT_EQ(cmds.size(), 2u);
  EXPECT_EQ(cmds[0], Argv({"SET", "a", "b"}));
  EXPECT_EQ(cmds[1], Argv({"PING"}));
}

TEST(Resp, AbsurdBulkLengthIsRejectedBeforeBuffering) {
  RequestParser p;
  bool failed = false;
  parse_all(p, "*2\r\n$3\r\nGET\r\n$99999999999\r\n", &failed);
  EXPECT_TRUE(failed);
  RequestParser q;
  parse_all(q, "*1\r\n$-5\r\n", &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, HugeArrayIsRejected) {
  ParserLimits lim;
  lim.args_max = 1000;
  RequestParser p(lim);
  bool failed = false;
  parse_all(p, "*1001\r\n", &failed);
  EXPECT_TRUE(failed);
  RequestParser q;
  parse_all(q, "*9223372036854775807\r\n", &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, CommandOverRequestBoundIsRejected) {
  ParserLimits lim;
  lim.request_bytes_max = 100;
  lim.bulk_bytes_max = 80;
  RequestParser p(lim);
  bool failed = false;
  parse_all(p, "*3\r\n$60\r\n", &failed);
  EXPECT_FALSE(failed);
  parse_all(p, std::string(60, 'x') + "\r\n$60\r\n", &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, NestedArrayInRequestIsAProtocolError) {
  RequestParser p;
  bool failed = false;
  parse_all(p, "*1\r\n*1\r\n*1\r\n$1\r\nx\r\n", &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, EndlessLineWithoutCrlfIsCutOff) {
  ParserLimits lim;
  lim.line_bytes_max = 64;
  RequestParser p(lim);
  bool failed = false;
  parse_all(p, std::string(65, 'A'), &failed);
  EXPECT_TRUE(failed);
  RequestParser q(lim);
  parse_all(q, "*" + std::string(70, '1'), &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, UnreadInputBeyondBoundIsRefused) {
  ParserLimits lim;
  lim.request_bytes_max = 100;
  lim.line_bytes_max = 20;
  RequestParser p(lim);
  // A client that pipelines without ever letting us parse cannot grow the buffer.
  EXPECT_TRUE(p.feed(std::string(100, 'x')).ok());
  EXPECT_FALSE(p.feed(std::string(21, 'x')).ok());
}

TEST(Resp, BulkWithoutTrailingCrlfIsRejected) {
  RequestParser p;
  bool failed = false;
  parse_all(p, "*1\r\n$2\r\nabXY", &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, FailedParserStaysFailed) {
  RequestParser p;
  bool failed = false;
  parse_all(p, "*x\r\n", &failed);
  EXPECT_TRUE(failed);
  parse_all(p, "*1\r\n$4\r\nPING\r\n", &failed);
  EXPECT_TRUE(failed);
}

TEST(Resp, ScanReplyFindsTheEndOfNestedValues) {
  const std::string v = "*3\r\n$1\r\na\r\n$-1\r\n*2\r\n:5\r\n+OK\r\n";
  auto r = scan_reply(v + "+next\r\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, v.size());
  auto partial = scan_reply(v.substr(0, v.size() - 3));
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(*partial, 0u);
}

TEST(Resp, ScanReplyRefusesDeepNesting) {
  ParserLimits lim;
  lim.depth_max = 8;
  std::string deep;
  for (int i = 0; i < 100; ++i)
    deep += "*1\r\n";
  deep += ":1\r\n";
  EXPECT_FALSE(scan_reply(deep, lim).ok());
}

TEST(Resp, ErrorReplyCannotInjectCrlf) {
  std::string out;
  reply::error(out, "ERR bad\r\n+OK");
  EXPECT_EQ(out, "-ERR bad  +OK\r\n");
}

TEST(Commands, LookupIsCaseInsensitiveAndUnknownIsNull) {
  ASSERT_NE(find_command("get"), nullptr);
  EXPECT_EQ(find_command("gEt")->kind, CommandKind::kRead);
  EXPECT_EQ(find_command("incr")->kind, CommandKind::kWrite);
  EXPECT_EQ(find_command("FLUSHALL"), nullptr);
  EXPECT_EQ(find_command(std::string(100, 'a')), nullptr);
}

TEST(Commands, ShardOfIsStableAndSpreads) {
  std::vector<int> hits(8, 0);
  for (int i = 0; i < 8000; ++i)
    ++hits[shard_of("key:" + std::to_string(i), 8)];
  for (int h : hits) {
    EXPECT_GT(h, 800);
    EXPECT_LT(h, 1200);
  }
  EXPECT_EQ(shard_of("abc", 16), shard_of("abc", 16));
  EXPECT_EQ(group_of_shard(0), 1u);
}

}  // namespace
}  // namespace nori::kv
