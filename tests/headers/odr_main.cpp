#include <cstdio>
#include <cstdlib>

int odr_a();
int odr_b();

// argv[1]: the number of public headers compiled alone into this program.
int main(int argc, char** argv) {
  const int expected = 0x4100 + 1;  // half(2.5f).bits + 1
  if (odr_a() != expected || odr_b() != expected) {
    std::puts("odr check: the two translation units disagree");
    return 1;
  }
  std::printf("%s public headers compile on their own; two TUs with everything link\n",
              argc > 1 ? argv[1] : "?");
  return argc > 1 && std::atoi(argv[1]) > 0 ? 0 : 1;
}
