// Weight-only products for decoding on x86 CPUs with AVX-512 (and AMX, below, where the CPU has it):
// out[r, n] = sum_k x[r, k] * w[n, k].
//
// Decoding multiplies a few rows by every weight matrix, so a product runs at the speed its weights
// stream from memory. These kernels read each weight once per call, in a layout packed for it
// (emojilm/native.py, pack). The AVX-512 kernels' layout: tiles of TILE_OUT output rows, each tile a run of chunks of LANES
// consecutive inputs per output, so that a thread reads one contiguous stream, prefetched into L2.
//
// A row's result does not depend on the other rows of the call: every (row, output) pair is summed in
// the same order (chunk by chunk into one 16-lane accumulator, then that accumulator's lanes) whatever
// the number of rows, the tiling or the threads. The batching engine (emojilm/engine.py) relies on it.
//
// bf16: weights in bfloat16, x rounded to bfloat16 (round to nearest even), pairs multiplied and
//       summed in float32 by vdpbf16ps (AVX512_BF16), as oneDNN's bf16 products do.
// int8: weights in int8 with a float scale per output row, x in float32; each weight is widened to
//       float32, the sum is in float32 and scaled at the end.
// Both count denormal inputs and results as zero (as vdpbf16ps does): on denormals the FMA units take
// a slow path, 100 times slower (load-time checks feed them denormals on purpose).
//
// The Python module is plain C API (no pybind11, no torch headers but ATen's parallel_for, which runs
// on torch's own thread pool): it builds in about 2 s. Its functions take tensors' addresses and
// sizes, which emojilm/native.py checks and passes; they release the GIL while they compute.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

constexpr int64_t TILE_OUT = 4;   // output rows per tile
constexpr int64_t TILE_ROWS = 4;  // input rows summed together against one tile
constexpr int64_t PREFETCH_BYTES = 4096;  // how far ahead of the weights being read to prefetch into L2
constexpr int64_t GRAIN_BYTES = 1 << 16;  // the fewest weight bytes worth a thread of their own
constexpr unsigned DENORMALS_ARE_ZERO = 0x0040, FLUSH_TO_ZERO = 0x8000;  // MXCSR bits

struct Bf16 {
  using Weight = uint16_t;
  using Input = uint16_t;  // x rounded to bfloat16
  static constexpr int64_t LANES = 32;
  static __m512i load(const Weight* w) { return _mm512_loadu_si512(w); }
  static __m512 add_loaded(__m512 acc, const Input* x, __m512i w) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(x), (__m512bh)w);
  }
};

struct Int8 {
  using Weight = int8_t;
  using Input = float;
  static constexpr int64_t LANES = 16;
  static __m512 load(const Weight* w) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))));
  }
  static __m512 add_loaded(__m512 acc, const Input* x, __m512 w) {
    return _mm512_fmadd_ps(_mm512_loadu_ps(x), w, acc);
  }
};

// Rows r0..r0+R of x (padded to whole chunks) against one tile; writes out[r, n0 .. n0 + valid).
template <typename F, int R>
void tile(const typename F::Input* x, int64_t ldx, const typename F::Weight* w, int64_t chunks,
          const float* scale, int64_t n0, int64_t valid, float* out, int64_t ldo) {
  __m512 acc[R][TILE_OUT];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < TILE_OUT; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    const typename F::Weight* wc = w + c * TILE_OUT * F::LANES;
    _mm_prefetch(reinterpret_cast<const char*>(wc) + PREFETCH_BYTES, _MM_HINT_T1);
    decltype(F::load(wc)) wv[TILE_OUT];
    for (int j = 0; j < TILE_OUT; ++j) wv[j] = F::load(wc + j * F::LANES);
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < TILE_OUT; ++j) acc[r][j] = F::add_loaded(acc[r][j], x + r * ldx + c * F::LANES, wv[j]);
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < TILE_OUT; ++j)
      if (j < valid) {
        float sum = _mm512_reduce_add_ps(acc[r][j]);
        out[r * ldo + n0 + j] = scale ? sum * scale[n0 + j] : sum;
      }
}

template <typename F>
void run(const typename F::Input* x, int64_t rows, int64_t ldx, const typename F::Weight* w, int64_t n_out,
         int64_t chunks, const float* scale, float* out) {
  const int64_t tiles = (n_out + TILE_OUT - 1) / TILE_OUT;
  const int64_t tile_size = chunks * TILE_OUT * F::LANES;  // weights per tile
  const int64_t grain = std::max<int64_t>(1, GRAIN_BYTES / (tile_size * (int64_t)sizeof(typename F::Weight)));
  at::parallel_for(0, tiles, grain, [&](int64_t first, int64_t last) {
    const unsigned mxcsr = _mm_getcsr();
    _mm_setcsr(mxcsr | DENORMALS_ARE_ZERO | FLUSH_TO_ZERO);
    for (int64_t t = first; t < last; ++t) {
      const int64_t n0 = t * TILE_OUT, valid = std::min(TILE_OUT, n_out - n0);
      const typename F::Weight* wt = w + t * tile_size;
      int64_t r = 0;
      for (; r + TILE_ROWS <= rows; r += TILE_ROWS)
        tile<F, TILE_ROWS>(x + r * ldx, ldx, wt, chunks, scale, n0, valid, out + r * n_out, n_out);
      const auto* xr = x + r * ldx;
      float* o = out + r * n_out;
      switch (rows - r) {
        case 3: tile<F, 3>(xr, ldx, wt, chunks, scale, n0, valid, o, n_out); break;
        case 2: tile<F, 2>(xr, ldx, wt, chunks, scale, n0, valid, o, n_out); break;
        case 1: tile<F, 1>(xr, ldx, wt, chunks, scale, n0, valid, o, n_out); break;
        default: break;
      }
    }
    _mm_setcsr(mxcsr);
  });
}

// A packed matrix: bf16 tiles (scale == nullptr) or int8 tiles with a float scale per output row, laid
// out for the AVX-512 kernel above (TILES) or for the AMX one below (AMX_BLOCKS).
enum Layout { TILES = 0, AMX_BLOCKS = 1 };
struct Matrix {
  const void* tiles;
  int64_t n_out, chunks;
  const float* scale;
  int layout;
};

// --- AMX: a tile unit that multiplies 16 rows by a block of weights per instruction -------------------
//
// At 4 to 40 rows (a trace's per-loop answers, a burst's steps, a prompt) the AVX-512 kernels compute
// more than they stream (one instruction per row per 32 or 16 weights). The tile unit takes 16 rows at
// once, so a product streams its weights at the same speed from 1 to 16 rows, and a prompt's rows cost
// a fraction of theirs. Weights are laid out in blocks of AMX_OUT outputs, each a run of chunks of
// inputs in the unit's order ([input group][output][group]: pairs of bf16, quads of int8), one
// contiguous 1 KB tile per chunk. Every (row, output) pair is summed chunk by chunk into its own
// accumulator, so a row's result does not depend on the other rows either.
// bf16: x rounded to bf16, pairs multiplied and summed in float32 (denormals count as zero, as the
//       unit does).
// int8: the unit multiplies int8 by int8 into exact int32 sums. Each row of x is written as
//       s * (d0 + d1 / 128), with s = max |x| / 127 and int8 digits d (x to within max |x| / 32,512,
//       15 bits of its largest value, where the weights hold 8; denormals count as zero), and the two
//       digit rows are multiplied apart: exactly, so the only rounding is the digits' and the final
//       combination's (in double). Two digits, not three: 8 rows fill one row block (a burst's decode
//       step), and a prompt's rows take two thirds of the tile passes (docs/benchmarks.md).
constexpr int64_t AMX_OUT = 16, AMX_ROWS = 16, AMX_TILE_BYTES = 1024;
constexpr int64_t DIGITS = 2, DIGIT_BASE = 128, INT8_ROWS = AMX_ROWS / DIGITS;  // x rows per int8 row block
constexpr int64_t CONVERTED_ROWS = 16;  // the fewest rows of x worth converting on several threads

__mmask16 tail(int64_t left) { return left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1); }

// f(r) for rows 0..rows, split among torch's threads from `grain` rows on.
template <typename F>
void each_row(int64_t rows, const F& f, int64_t grain = 1) {
  at::parallel_for(0, rows, grain, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) f(r);
  });
}

struct TileConfig {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// Whether this CPU has AMX for bf16 and int8 and Linux lets this process use its tile registers.
bool amx_usable() {
  unsigned a, b, c, d;
  constexpr unsigned BF16 = 1u << 22, TILE = 1u << 24, INT8 = 1u << 25;  // cpuid 7.0 EDX
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || (d & (BF16 | TILE | INT8)) != (BF16 | TILE | INT8)) return false;
  constexpr long REQUEST_PERMISSION = 0x1023, TILE_DATA = 18;  // arch_prctl's ARCH_REQ_XCOMP_PERM, XTILEDATA
  return syscall(SYS_arch_prctl, REQUEST_PERMISSION, TILE_DATA) == 0;
}

// Rows of x as the unit takes them: bf16 (16 rows a block) or int8 digits (INT8_ROWS rows a block, digit
// d of slot i at tile row i * DIGITS + d), with each row's scale s.
struct AmxRows {
  const void* tiles;
  int64_t blocks, stride;  // row blocks; bytes from one tile row to the next
  int64_t tile_rows;       // the rows of a block the unit reads (fewer than 16 where x has one block only)
  const double* scale;     // int8: s per row
};

// Writes a row block's sums against one block of outputs (int8: combines each row's digits and scales),
// 16 outputs a vector: the same operations, in the same order, as one output at a time would run.
template <bool INT8>
void write_sums(const void* tile, const AmxRows& x, int64_t rb, int64_t rows, const Matrix& m, int64_t b, float* out) {
  const int64_t per_block = INT8 ? INT8_ROWS : AMX_ROWS;
  const int64_t n0 = b * AMX_OUT, r0 = rb * per_block, here = std::min(per_block, rows - r0);
  if (n0 >= m.n_out) return;  // a block of padding (pack makes the count even)
  const __mmask16 valid = tail(m.n_out - n0);
  for (int64_t r = 0; r < here; ++r) {
    float* o = out + (r0 + r) * m.n_out + n0;
    if constexpr (INT8) {
      const int32_t* sums = static_cast<const int32_t*>(tile) + r * DIGITS * AMX_OUT;
      const __m512d base = _mm512_set1_pd(1.0 / DIGIT_BASE), scale = _mm512_set1_pd(x.scale[r0 + r]);
      __m256 halves[2];
      for (int half = 0; half < 2; ++half) {  // d0 + d1 / 128 (+ d2 / 128^2 ...), Horner's way from the last
        __m512d digits = _mm512_setzero_pd();
        for (int64_t d = DIGITS - 1; d >= 0; --d) {  // (times 1 / 128: exact, as dividing by 128 is)
          const auto* sum = reinterpret_cast<const __m256i*>(sums + d * AMX_OUT + 8 * half);
          digits = _mm512_fmadd_pd(digits, base, _mm512_cvtepi32_pd(_mm256_load_si256(sum)));
        }
        const __mmask8 mine = static_cast<__mmask8>(valid >> (8 * half));
        const __m512d weights = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(mine, m.scale + n0 + 8 * half));
        halves[half] = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_mul_pd(scale, digits), weights));
      }
      _mm512_mask_storeu_ps(o, valid, _mm512_insertf32x8(_mm512_castps256_ps512(halves[0]), halves[1], 1));
    } else {
      _mm512_mask_storeu_ps(o, valid, _mm512_load_ps(static_cast<const float*>(tile) + r * AMX_OUT));
    }
  }
}

// Output blocks first..last (pairs of them) for every pair of row blocks: four independent sums (tiles
// 0-3) of two row blocks (tiles 4, 5) by two weight blocks (tiles 6, 7), chunk by chunk; where x has
// one row block (TWO false: a decode step's rows), two sums of its tile_rows rows alone.
template <bool INT8, bool TWO>
__attribute__((target("amx-tile,amx-bf16,amx-int8"))) void amx_blocks(const AmxRows& x, int64_t rows, const Matrix& m,
                                                                        int64_t first, int64_t last, float* out) {
  TileConfig config = {};
  config.palette = 1;
  for (int t = 0; t < 8; ++t) config.colsb[t] = 64, config.rows[t] = t < 6 ? x.tile_rows : AMX_ROWS;
  _tile_loadconfig(&config);
  const auto* tiles = static_cast<const uint8_t*>(m.tiles);
  const auto* xs = static_cast<const uint8_t*>(x.tiles);
  const int64_t block_bytes = m.chunks * AMX_TILE_BYTES, rows_bytes = AMX_ROWS * x.stride;
  alignas(64) int32_t sums[4][AMX_ROWS * AMX_OUT];
  for (int64_t b = first; b < last; b += 2) {
    const uint8_t *w0 = tiles + b * block_bytes, *w1 = w0 + block_bytes;
    for (int64_t rb = 0; rb < x.blocks; rb += TWO ? 2 : 1) {
      const uint8_t *x0 = xs + rb * rows_bytes, *x1 = x0 + rows_bytes;
      _tile_zero(0);
      _tile_zero(1);
      if constexpr (TWO) {
        _tile_zero(2);
        _tile_zero(3);
      }
      for (int64_t c = 0; c < m.chunks; ++c) {
        _tile_loadd(4, x0 + c * 64, x.stride);
        if constexpr (TWO) _tile_loadd(5, x1 + c * 64, x.stride);
        _tile_loadd(6, w0 + c * AMX_TILE_BYTES, 64);
        _tile_loadd(7, w1 + c * AMX_TILE_BYTES, 64);
        if constexpr (INT8) {
          _tile_dpbssd(0, 4, 6);
          _tile_dpbssd(1, 4, 7);
          if constexpr (TWO) {
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
          }
        } else {
          _tile_dpbf16ps(0, 4, 6);
          _tile_dpbf16ps(1, 4, 7);
          if constexpr (TWO) {
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
          }
        }
      }
      _tile_stored(0, sums[0], AMX_OUT * 4);
      _tile_stored(1, sums[1], AMX_OUT * 4);
      if constexpr (TWO) {
        _tile_stored(2, sums[2], AMX_OUT * 4);
        _tile_stored(3, sums[3], AMX_OUT * 4);
      }
      for (int i = 0; i < (TWO ? 4 : 2); ++i) write_sums<INT8>(sums[i], x, rb + i / 2, rows, m, b + i % 2, out);
    }
  }
  _tile_release();
}

// x's rows as int8 digits (AmxRows' layout; ld bytes a row) and each row's scale s, 16 values at a time:
// q = x / s, then each digit is q rounded and q becomes what is left, times 128 (exact in float32).
void int8_digits(const float* x, int64_t rows, int64_t width, int64_t ld, int8_t* digits, double* scale) {
  const __m512 tiny = _mm512_set1_ps(FLT_MIN), base = _mm512_set1_ps(DIGIT_BASE);
  each_row(rows, [&](int64_t r) {
    const float* xr = x + r * width;
    __m512 largest = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (int64_t i = 0; i < width; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(tail(width - i), xr + i);
      largest = _mm512_max_ps(largest, _mm512_abs_ps(v));
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    }
    const float most = _mm512_reduce_max_ps(largest);
    int8_t* row = digits + ((r / INT8_ROWS) * AMX_ROWS + r % INT8_ROWS * DIGITS) * ld;
    if (nan || !std::isfinite(most) || most < FLT_MIN) {  // NaN results where a float sum gives them; else zeros
      scale[r] = nan || !std::isfinite(most) ? NAN : 0.0;
      return;
    }
    const float inverse = 127.0f / most;
    scale[r] = 1.0 / inverse;
    for (int64_t i = 0; i < width; i += 16) {
      const __mmask16 here = tail(width - i);
      const __m512 v = _mm512_maskz_loadu_ps(here, xr + i);
      __m512 rest = _mm512_mul_ps(_mm512_maskz_mov_ps(_mm512_cmp_ps_mask(_mm512_abs_ps(v), tiny, _CMP_GE_OQ), v),
                                  _mm512_set1_ps(inverse));  // denormals count as zero
      for (int64_t d = 0; d < DIGITS; ++d) {
        const __m512 digit = _mm512_roundscale_ps(rest, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_mask_cvtepi32_storeu_epi8(row + d * ld + i, here, _mm512_cvtps_epi32(digit));
        rest = _mm512_mul_ps(_mm512_sub_ps(rest, digit), base);
      }
    }
  }, CONVERTED_ROWS);
}

// x's rows rounded to bf16 (to nearest even, as torch's conversion does; denormals count as zero, as
// vdpbf16ps and the tile unit count them), ld a row.
void bf16_rows(const float* x, int64_t rows, int64_t width, int64_t ld, uint16_t* out) {
  each_row(rows, [&](int64_t r) {
    for (int64_t i = 0; i < width; i += 16)
      _mm256_mask_storeu_epi16(out + r * ld + i, tail(width - i),
                               (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(tail(width - i), x + r * width + i)));
  }, CONVERTED_ROWS);
}

void amx_multiply(const Matrix& m, const float* x, int64_t rows, int64_t width, float* out) {
  if (rows == 0) return;  // (a tile of no rows is no valid configuration)
  thread_local std::vector<uint8_t> tiles;  // this thread's: the workers below have their own
  thread_local std::vector<double> scale;
  const bool int8 = m.scale != nullptr;
  const int64_t per_block = int8 ? INT8_ROWS : AMX_ROWS;
  const int64_t stride = m.chunks * 64;  // a chunk is 64 bytes of a row: 32 bf16 or 64 int8
  const int64_t row_blocks = (rows + per_block - 1) / per_block;
  const bool two = row_blocks > 1;  // then pairs of row blocks (an even count of them), else the rows used
  AmxRows a{nullptr, two ? row_blocks + row_blocks % 2 : 1, stride, two ? AMX_ROWS : rows * (int8 ? DIGITS : 1)};
  tiles.assign(two ? a.blocks * AMX_ROWS * stride : a.tile_rows * stride, 0);
  if (int8) {
    scale.resize(rows);
    int8_digits(x, rows, width, stride, reinterpret_cast<int8_t*>(tiles.data()), scale.data());
  } else {
    bf16_rows(x, rows, width, stride / 2, reinterpret_cast<uint16_t*>(tiles.data()));
  }
  a.tiles = tiles.data();
  a.scale = scale.data();
  const int64_t pairs = (m.n_out + 2 * AMX_OUT - 1) / (2 * AMX_OUT);  // of output blocks (pack makes them even)
  const int64_t grain = std::max<int64_t>(1, GRAIN_BYTES / (2 * m.chunks * AMX_TILE_BYTES));
  at::parallel_for(0, pairs, grain, [&](int64_t first, int64_t last) {
    if (int8 && two) amx_blocks<true, true>(a, rows, m, 2 * first, 2 * last, out);
    else if (int8) amx_blocks<true, false>(a, rows, m, 2 * first, 2 * last, out);
    else if (two) amx_blocks<false, true>(a, rows, m, 2 * first, 2 * last, out);
    else amx_blocks<false, false>(a, rows, m, 2 * first, 2 * last, out);
  });
}

// out[rows, n_out] = x[rows, width] times m: x rounded to bf16 (bf16 weights) or as is, zero-padded to
// whole chunks in a scratch buffer the calling thread keeps.
void multiply(const Matrix& m, const float* x, int64_t rows, int64_t width, float* out) {
  if (m.layout == AMX_BLOCKS) return amx_multiply(m, x, rows, width, out);
  thread_local std::vector<uint16_t> rounded;
  thread_local std::vector<float> float_rows;
  if (m.scale == nullptr) {
    const int64_t ld = m.chunks * Bf16::LANES;
    rounded.assign(rows * ld, 0);
    bf16_rows(x, rows, width, ld, rounded.data());
    run<Bf16>(rounded.data(), rows, ld, static_cast<const uint16_t*>(m.tiles), m.n_out, m.chunks, nullptr, out);
    return;
  }
  const int64_t ld = m.chunks * Int8::LANES;
  if (ld != width) {
    float_rows.assign(rows * ld, 0.0f);
    for (int64_t r = 0; r < rows; ++r) std::copy(x + r * width, x + (r + 1) * width, float_rows.data() + r * ld);
    x = float_rows.data();
  }
  run<Int8>(x, rows, ld, static_cast<const int8_t*>(m.tiles), m.n_out, m.chunks, m.scale, out);
}

bool parse_matrix(PyObject* tuple, Matrix* m) {
  unsigned long long tiles, scale;
  long long n_out, chunks;
  int layout;
  if (!PyArg_ParseTuple(tuple, "KLLKi", &tiles, &n_out, &chunks, &scale, &layout)) return false;
  *m = {reinterpret_cast<const void*>(tiles), n_out, chunks, reinterpret_cast<const float*>(scale), layout};
  return true;
}

// product(x, rows, width, matrix, out): out float32 [rows, n_out] = x float32 [rows, width] times a
// Matrix tuple (multiply: x rounded to bf16 for bf16 weights, zero-padded to whole chunks).
PyObject* product(PyObject*, PyObject* args) {
  unsigned long long x, out;
  long long rows, width;
  PyObject* matrix_tuple;
  Matrix m;
  if (!PyArg_ParseTuple(args, "KLLOK", &x, &rows, &width, &matrix_tuple, &out) || !parse_matrix(matrix_tuple, &m))
    return nullptr;
  Py_BEGIN_ALLOW_THREADS
  multiply(m, reinterpret_cast<const float*>(x), rows, width, reinterpret_cast<float*>(out));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// --- A block's decode, fused: the products with the small ops between them, row by row ---------------
//
// Between two products a decode step runs a dozen small ops (norms, RoPE, SiLU, residual adds). Through
// torch each costs a dispatch whose code and data the weights just streamed have pushed out of the
// caches: ~0.4 ms a block at the published shape, against 0.13 ms with warm caches. Here they are a
// few loops over each row, in one call before and one after the attention (torch's where a prompt's
// positions attend to each other; ours, below, in the same call, where each row feeds one position).
// Every row is computed on its own, in one order, so its bits do not depend on the other rows. The
// small ops are AVX-512 loops, rows split among the threads (each_row): a prompt's 100-300 rows would
// otherwise cost as much as their products.

// out = x / sqrt(mean(x^2) + eps) * weight for one row, the sum of squares in double.
void rms_norm_row(const float* x, int64_t dim, const float* weight, float eps, float* out) {
  __m512d squares[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  for (int64_t i = 0; i < dim; i += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(tail(dim - i), x + i);
    for (int half = 0; half < 2; ++half) {
      const __m512d d = _mm512_cvtps_pd(half ? _mm512_extractf32x8_ps(v, 1) : _mm512_castps512_ps256(v));
      squares[half] = _mm512_fmadd_pd(d, d, squares[half]);
    }
  }
  const double sum = _mm512_reduce_add_pd(_mm512_add_pd(squares[0], squares[1]));
  const __m512 inverse = _mm512_set1_ps(1.0f / std::sqrt(static_cast<float>(sum / dim) + eps));
  for (int64_t i = 0; i < dim; i += 16) {
    const __mmask16 here = tail(dim - i);
    const __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(here, x + i), inverse);
    _mm512_mask_storeu_ps(out + i, here, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(here, weight + i)));
  }
}

// e^x for 16 floats, within 2 ulp (Cephes' expf: x = n ln 2 + r, a polynomial for e^r, times 2^n).
__m512 exp16(__m512 x) {
  const __m512 limit = _mm512_set1_ps(88.0f);
  x = _mm512_min_ps(limit, _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), limit), x));  // (NaN stays NaN)
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln 2 in two parts, the first exact
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  for (float c : {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f})
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

// Turns the first `rotated` values of a row (q and k heads side by side) as pairs (a, b) by the row's
// (cos, sin) pairs, head_dim / 2 of them, alike for every head: (a cos - b sin, a sin + b cos).
void rope_row(float* values, const float* turn, int64_t rotated, int64_t head_dim) {
  if (head_dim % 16 == 0) {  // 8 pairs a vector, within one head
    for (int64_t i = 0; i < rotated; i += 16) {
      const __m512 v = _mm512_loadu_ps(values + i), t = _mm512_loadu_ps(turn + i % head_dim);
      const __m512 swapped = _mm512_permute_ps(v, 0xB1);  // (b, a) pairs
      const __m512 turned = _mm512_fmaddsub_ps(v, _mm512_moveldup_ps(t), _mm512_mul_ps(swapped, _mm512_movehdup_ps(t)));
      _mm512_storeu_ps(values + i, turned);
    }
    return;
  }
  for (int64_t i = 0; i < rotated; i += 2) {
    const int64_t pair = (i % head_dim) / 2;
    const float a = values[i], b = values[i + 1], cos = turn[2 * pair], sin = turn[2 * pair + 1];
    values[i] = a * cos - b * sin;
    values[i + 1] = a * sin + b * cos;
  }
}

// out[i] = a[i] + b[i]
void add_row(const float* a, const float* b, int64_t n, float* out) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 here = tail(n - i);
    _mm512_mask_storeu_ps(out + i, here, _mm512_add_ps(_mm512_maskz_loadu_ps(here, a + i), _mm512_maskz_loadu_ps(here, b + i)));
  }
}

// rms_norm(x[r]) times qkv, whose first `rotated` values (the q and k heads) turn by RoPE (rope_row),
// rope[r] the row's (cos, sin) pairs.
void qkv_rows(const float* x, int64_t rows, int64_t dim, const float* norm, float eps, const Matrix& qkv,
              const float* rope, int64_t rotated, int64_t head_dim, float* out) {
  thread_local std::vector<float> normed_rows;
  normed_rows.resize(rows * dim);
  float* normed = normed_rows.data();  // (this thread's: the workers have their own)
  each_row(rows, [&](int64_t r) { rms_norm_row(x + r * dim, dim, norm, eps, normed + r * dim); });
  multiply(qkv, normed, rows, dim, out);
  each_row(rows, [&](int64_t r) { rope_row(out + r * qkv.n_out, rope + r * head_dim, rotated, head_dim); });
}

// The rest of a block after its attention: h = x + attended times o; out = h + (silu(g) * u) times w2,
// where g and u are the halves of rms_norm(h) times w13 (w1 | w3).
void output_rows(const float* x, const float* attended, int64_t rows, int64_t dim, int64_t heads_width,
                 const Matrix& o, const float* norm, float eps, const Matrix& w13, int64_t hidden, const Matrix& w2,
                 float* out) {
  thread_local std::vector<float> h_rows, normed_rows, gate_up_rows, gated_rows;
  h_rows.resize(rows * dim);
  normed_rows.resize(rows * dim);
  gate_up_rows.resize(rows * 2 * hidden);
  gated_rows.resize(rows * hidden);
  float *h = h_rows.data(), *normed = normed_rows.data(), *gate_up = gate_up_rows.data(), *gated = gated_rows.data();
  multiply(o, attended, rows, heads_width, h);
  each_row(rows, [&](int64_t r) {
    add_row(h + r * dim, x + r * dim, dim, h + r * dim);
    rms_norm_row(h + r * dim, dim, norm, eps, normed + r * dim);
  });
  multiply(w13, normed, rows, dim, gate_up);
  each_row(rows, [&](int64_t r) {
    const float *g = gate_up + r * 2 * hidden, *u = g + hidden;
    for (int64_t i = 0; i < hidden; i += 16) {  // silu(g) * u = g / (1 + e^-g) * u
      const __mmask16 here = tail(hidden - i);
      const __m512 gi = _mm512_maskz_loadu_ps(here, g + i);
      const __m512 silu = _mm512_div_ps(gi, _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), gi))));
      _mm512_mask_storeu_ps(gated + r * hidden + i, here, _mm512_mul_ps(silu, _mm512_maskz_loadu_ps(here, u + i)));
    }
  });
  multiply(w2, gated, rows, hidden, out);
  each_row(rows, [&](int64_t r) { add_row(out + r * dim, h + r * dim, dim, out + r * dim); });
}

// --- A decode step's attention: one position per row, each row in its own KV cache ------------------
//
// Through torch a row's attention is half a dozen ops (its key and value written to the cache, views,
// scaled_dot_product_attention), each a dispatch: at the published shape 0.15-0.2 ms a block and row,
// as much as the block's products for 8 rows. Here it is one loop per (row, head), in one order
// whatever the other rows, so a row's bits do not depend on the batch either.

// Where a row's keys and values sit (float32, in elements): its cache at k and v, loop l's layer j's kv
// head h's position p at strides.at(l, j, h, p) = l * loop + j * layer + h * head + p * position. It
// writes its new key and value at `position` and attends positions first..position, in its first
// `loops` loops; past them it attends to nothing and gets its queries back (its state is not read).
// A row may first attend a prefix held elsewhere (a trace's branch: the trunk's positions before it
// branched, emojilm.kvcache.BranchCache): prefix_length positions at prefix_k and prefix_v, laid out
// by the prefix's own strides; a row without one has prefix_length 0.
constexpr int64_t MAX_HEAD_DIM = 256;  // emojilm.model checks it
struct Strides {
  int64_t loop, layer, head, position;
  int64_t at(int64_t l, int64_t j, int64_t h, int64_t p) const { return l * loop + j * layer + h * head + p * position; }
};
struct Slot {
  int64_t k, v;
  Strides strides;
  int64_t position, first, loops;
  int64_t prefix_k, prefix_v;
  Strides prefix;
  int64_t prefix_length;
};

float dot(const float* a, const float* b, int64_t n) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16)
    sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail(n - i), a + i), _mm512_maskz_loadu_ps(tail(n - i), b + i), sum);
  return _mm512_reduce_add_ps(sum);
}

// out[r] = softmax(q k^T / sqrt(head_dim)) v for each row's one position, its q, k and v heads side by
// side in projected[r] ((heads + 2 kv_heads) * head_dim values, as qkv_rows leaves them).
void attend_rows(const float* projected, int64_t rows, int64_t heads, int64_t kv_heads, int64_t head_dim,
                 const Slot* slots, int64_t loop, int64_t layer, float* out) {
  const int64_t width = (heads + 2 * kv_heads) * head_dim, group = heads / kv_heads;
  for (int64_t r = 0; r < rows; ++r) {
    const Slot& s = slots[r];
    if (loop >= s.loops) continue;
    for (int64_t h = 0; h < kv_heads; ++h) {
      const int64_t at = s.strides.at(loop, layer, h, s.position);
      const float* k = projected + r * width + (heads + h) * head_dim;
      std::copy(k, k + head_dim, reinterpret_cast<float*>(s.k) + at);
      std::copy(k + kv_heads * head_dim, k + (kv_heads + 1) * head_dim, reinterpret_cast<float*>(s.v) + at);
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  at::parallel_for(0, rows * heads, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> weights;
    thread_local std::vector<const float*> keys, values;  // every position's key and value, prefix first
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / heads, h = i % heads;
      const Slot& s = slots[r];
      const float* q = projected + r * width + h * head_dim;
      float* o = out + r * heads * head_dim + h * head_dim;
      if (loop >= s.loops) {
        std::copy(q, q + head_dim, o);
        continue;
      }
      keys.clear();
      values.clear();
      const auto read = [&](int64_t k, int64_t v, const Strides& strides, int64_t first, int64_t last) {
        for (int64_t p = first; p <= last; ++p) {
          const int64_t at = strides.at(loop, layer, h / group, p);
          keys.push_back(reinterpret_cast<const float*>(k) + at);
          values.push_back(reinterpret_cast<const float*>(v) + at);
        }
      };
      read(s.prefix_k, s.prefix_v, s.prefix, 0, s.prefix_length - 1);
      read(s.k, s.v, s.strides, s.first, s.position);
      const int64_t n = static_cast<int64_t>(keys.size());
      for (int64_t j = 0; j < n; ++j)  // every line at once: the item's reads overlap rather than queue
        for (int64_t b = 0; b < head_dim * 4; b += 64) {
          _mm_prefetch(reinterpret_cast<const char*>(keys[j]) + b, _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(values[j]) + b, _MM_HINT_T0);
        }
      weights.resize(n);
      float largest = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        weights[j] = dot(q, keys[j], head_dim) * scale;
        largest = std::max(largest, weights[j]);
      }
      for (int64_t j = 0; j < n; j += 16) {
        const __m512 shifted = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail(n - j), &weights[j]), _mm512_set1_ps(largest));
        _mm512_mask_storeu_ps(&weights[j], tail(n - j), exp16(shifted));
      }
      float total = 0.0f;
      for (int64_t j = 0; j < n; ++j) total += weights[j];
      __m512 sums[MAX_HEAD_DIM / 16];  // the weighted sum of the values, position by position (one pass over them)
      const int64_t vectors = (head_dim + 15) / 16;
      for (int64_t c = 0; c < vectors; ++c) sums[c] = _mm512_setzero_ps();
      for (int64_t j = 0; j < n; ++j)
        for (int64_t c = 0; c < vectors; ++c)
          sums[c] = _mm512_fmadd_ps(_mm512_set1_ps(weights[j]),
                                    _mm512_maskz_loadu_ps(tail(head_dim - 16 * c), values[j] + 16 * c), sums[c]);
      for (int64_t c = 0; c < vectors; ++c)
        _mm512_mask_storeu_ps(o + 16 * c, tail(head_dim - 16 * c), _mm512_div_ps(sums[c], _mm512_set1_ps(total)));
    }
  });
}

// attention_inputs(x, rows, dim, norm, eps, qkv, rope, rotated, head_dim, out): qkv_rows into out.
// x, norm, rope and out: float32; qkv: a Matrix tuple.
PyObject* attention_inputs(PyObject*, PyObject* args) {
  unsigned long long x, norm, rope, out;
  long long rows, dim, rotated, head_dim;
  double eps;
  PyObject* qkv_tuple;
  Matrix qkv;
  if (!PyArg_ParseTuple(args, "KLLKdOKLLK", &x, &rows, &dim, &norm, &eps, &qkv_tuple, &rope, &rotated, &head_dim,
                        &out) ||
      !parse_matrix(qkv_tuple, &qkv))
    return nullptr;
  Py_BEGIN_ALLOW_THREADS
  qkv_rows(reinterpret_cast<const float*>(x), rows, dim, reinterpret_cast<const float*>(norm), (float)eps, qkv,
           reinterpret_cast<const float*>(rope), rotated, head_dim, reinterpret_cast<float*>(out));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// block_output(x, attended, rows, dim, heads_width, o, norm, eps, w13, hidden, w2, out): output_rows.
PyObject* block_output(PyObject*, PyObject* args) {
  unsigned long long x, attended, norm, out;
  long long rows, dim, heads_width, hidden;
  double eps;
  PyObject *o_tuple, *w13_tuple, *w2_tuple;
  Matrix o, w13, w2;
  if (!PyArg_ParseTuple(args, "KKLLLOKdOLOK", &x, &attended, &rows, &dim, &heads_width, &o_tuple, &norm, &eps,
                        &w13_tuple, &hidden, &w2_tuple, &out) ||
      !parse_matrix(o_tuple, &o) || !parse_matrix(w13_tuple, &w13) || !parse_matrix(w2_tuple, &w2))
    return nullptr;
  Py_BEGIN_ALLOW_THREADS
  output_rows(reinterpret_cast<const float*>(x), reinterpret_cast<const float*>(attended), rows, dim, heads_width, o,
              reinterpret_cast<const float*>(norm), (float)eps, w13, hidden, w2, reinterpret_cast<float*>(out));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// decode_block(x, rows, dim, heads, kv_heads, head_dim, slots, loop, layer, attention_norm, qkv, rope, ffn_norm,
// eps, o, w13, hidden, w2, out): a whole block for one position per row, each row attending in its own
// cache at (loop, layer) (slots: int64 [rows, SLOT_FIELDS], a Slot each): qkv_rows, attend_rows, output_rows.
PyObject* decode_block(PyObject*, PyObject* args) {
  unsigned long long x, slots, attention_norm, rope, ffn_norm, out;
  long long rows, dim, heads, kv_heads, head_dim, loop, layer, hidden;
  double eps;
  PyObject *qkv_tuple, *o_tuple, *w13_tuple, *w2_tuple;
  Matrix qkv, o, w13, w2;
  if (!PyArg_ParseTuple(args, "KLLLLLKLLKOKKdOOLOK", &x, &rows, &dim, &heads, &kv_heads, &head_dim, &slots, &loop,
                        &layer, &attention_norm, &qkv_tuple, &rope, &ffn_norm, &eps, &o_tuple, &w13_tuple, &hidden, &w2_tuple,
                        &out) ||
      !parse_matrix(qkv_tuple, &qkv) || !parse_matrix(o_tuple, &o) || !parse_matrix(w13_tuple, &w13) ||
      !parse_matrix(w2_tuple, &w2))
    return nullptr;
  Py_BEGIN_ALLOW_THREADS
  thread_local std::vector<float> projected, attended;
  projected.resize(rows * qkv.n_out);
  attended.resize(rows * heads * head_dim);
  const float* xs = reinterpret_cast<const float*>(x);
  qkv_rows(xs, rows, dim, reinterpret_cast<const float*>(attention_norm), (float)eps, qkv,
           reinterpret_cast<const float*>(rope), (heads + kv_heads) * head_dim, head_dim, projected.data());
  attend_rows(projected.data(), rows, heads, kv_heads, head_dim, reinterpret_cast<const Slot*>(slots), loop, layer,
              attended.data());
  output_rows(xs, attended.data(), rows, dim, heads * head_dim, o, reinterpret_cast<const float*>(ffn_norm),
              (float)eps, w13, hidden, w2, reinterpret_cast<float*>(out));
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"product", product, METH_VARARGS, "x (float32) @ packed bf16 or int8 weights -> float32"},
    {"attention_inputs", attention_inputs, METH_VARARGS, "a block's normed input times wq|wk|wv, q and k turned"},
    {"block_output", block_output, METH_VARARGS, "the rest of a block after its attention"},
    {"decode_block", decode_block, METH_VARARGS, "a block for one position per row, each in its own KV cache"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef definition = {PyModuleDef_HEAD_INIT, "emojilm_products", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit_emojilm_products() {
  PyObject* module = PyModule_Create(&definition);
  if (module == nullptr || PyModule_AddIntConstant(module, "TILE_OUT", TILE_OUT) < 0 ||
      PyModule_AddIntConstant(module, "BF16_LANES", Bf16::LANES) < 0 ||
      PyModule_AddIntConstant(module, "INT8_LANES", Int8::LANES) < 0 ||
      PyModule_AddIntConstant(module, "AMX_OUT", AMX_OUT) < 0 ||
      PyModule_AddIntConstant(module, "AMX_TILE_BYTES", AMX_TILE_BYTES) < 0 ||
      PyModule_AddIntConstant(module, "MAX_HEAD_DIM", MAX_HEAD_DIM) < 0 ||
      PyModule_AddIntConstant(module, "SLOT_FIELDS", sizeof(Slot) / sizeof(int64_t)) < 0 ||
      PyModule_AddIntConstant(module, "AMX", amx_usable()) < 0)
    return nullptr;
  return module;
}
