// Reference for tests/test_stlsort.py: libstdc++ std::sort / std::partial_sort on (key, payload)
// tuples compared by key only, as FluCoMa's PartialTracking::assignGreedy does.
// stdin: mode n k_0 .. k_{n-1}; stdout: the payload order after sorting.
#include <algorithm>
#include <cstdio>
#include <tuple>
#include <vector>
int main() {
  int mode; long n;
  while (std::scanf("%d %ld", &mode, &n) == 2) {
    std::vector<std::tuple<double, long>> v(n);
    for (long i = 0; i < n; i++) { double k; std::scanf("%lf", &k); v[i] = {k, i}; }
    auto cmp = [](auto const& a, auto const& b) { return std::get<0>(a) < std::get<0>(b); };
    if (mode == 0) std::sort(v.begin(), v.end(), cmp);
    else std::partial_sort(v.begin(), v.end(), v.end(), cmp);
    for (long i = 0; i < n; i++) std::printf("%ld ", std::get<1>(v[i]));
    std::printf("\n");
  }
  return 0;
}
