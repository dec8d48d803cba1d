// A stand-in for libFuzzer's main in non-fuzz builds: replays every file of
// the corpus folders given on the command line, then feeds a bounded number
// of deterministic pseudo-random inputs (raw, and mutations of the corpus
// entries) to LLVMFuzzerTestOneInput. It proves nothing about coverage; it
// keeps every fuzz target compiling and its decoder exercised under the
// sanitizers on every CI run. Real fuzzing: build with -DNORI_FUZZ=ON.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr int kRandomInputs = 20000;
constexpr size_t kRandomInputBytesMax = 4096;

void run(const std::string& input) {
  // Copy into an exactly-sized heap buffer so ASan catches any read past the end.
  std::vector<uint8_t> buf(input.begin(), input.end());
  LLVMFuzzerTestOneInput(buf.empty() ? nullptr : buf.data(), buf.size());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path dir(argv[i]);
    if (!std::filesystem::is_directory(dir)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  for (const auto& c : corpus)
    run(c);
  std::mt19937_64 rng(0x6e6f7269);  // fixed seed: a failure reproduces exactly
  for (int i = 0; i < kRandomInputs; ++i) {
    std::string input;
    if (!corpus.empty() && (i % 2 == 0)) {
      input = corpus[rng() % corpus.size()];
      int flips = 1 + static_cast<int>(rng() % 8);
      for (int f = 0; f < flips && !input.empty(); ++f) {
        size_t at = rng() % input.size();
        switch (rng() % 3) {
          case 0:
            input[at] = static_cast<char>(rng());
            break;
          case 1:
            input.resize(at);
            break;
          default:
            input.insert(at, 1, static_cast<char>(rng()));
            break;
        }
      }
    } else {
      input.resize(rng() % kRandomInputBytesMax);
      for (auto& ch : input)
        ch = static_cast<char>(rng());
    }
    run(input);
  }
  std::printf("fuzz driver: %zu corpus inputs, %d generated inputs, no crash\n", corpus.size(),
              kRandomInputs);
  return 0;
}
