#include "kv/auth.h"

#include <gtest/gtest.h>

namespace nori::kv {
namespace {

using Args = std::vector<std::string>;

TEST(ForwardAuth, TagFromTheSameSecretVerifies) {
  ForwardAuth a("cluster secret"), b("cluster secret");
  const Args args = {"3", "entry bytes"};
  EXPECT_TRUE(b.verify("NORI.WRITE", args, a.tag("NORI.WRITE", args)));
}

TEST(ForwardAuth, ForgedOrAlteredCommandsAreRefused) {
  ForwardAuth a("cluster secret"), other("another secret");
  const Args args = {"3", "entry bytes"};
  const std::string tag = a.tag("NORI.WRITE", args);
  EXPECT_FALSE(a.verify("NORI.WRITE", args, other.tag("NORI.WRITE", args)));  // wrong secret
  EXPECT_FALSE(a.verify("NORI.READ", args, tag));                             // other command
  EXPECT_FALSE(a.verify("NORI.WRITE", Args{"4", "entry bytes"}, tag));        // other group
  EXPECT_FALSE(a.verify("NORI.WRITE", Args{"3", "entry byteS"}, tag));        // altered entry
  // Argument boundaries are part of what is signed.
  EXPECT_FALSE(a.verify("NORI.WRITE", Args{"3e", "ntry bytes"}, tag));
  EXPECT_FALSE(a.verify("NORI.WRITE", args, ""));
  EXPECT_FALSE(a.verify("NORI.WRITE", args, tag.substr(0, 15)));
  std::string flipped = tag;
  flipped[0] ^= 1;
  EXPECT_FALSE(a.verify("NORI.WRITE", args, flipped));
}

}  // namespace
}  // namespace nori::kv
