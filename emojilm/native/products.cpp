// Weight-only products for decoding on x86 CPUs with AVX-512: out[r, n] = sum_k x[r, k] * w[n, k].
//
// Decoding multiplies a few rows by every weight matrix, so a product runs at the speed its weights
// stream from memory. These kernels read each weight once per call, in a layout packed for it
// (emojilm/native.py, pack): tiles of TILE_OUT output rows, each tile a run of chunks of LANES
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
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

// A packed matrix: bf16 tiles (scale == nullptr) or int8 tiles with a float scale per output row.
struct Matrix {
  const void* tiles;
  int64_t n_out, chunks;
  const float* scale;
};

uint16_t to_bf16(float value) {  // round to nearest even, as torch's conversion does
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if (std::isnan(value)) return 0x7FC0;
  return static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
}

// out[rows, n_out] = x[rows, width] times m: x rounded to bf16 (bf16 weights) or as is, zero-padded to
// whole chunks in a scratch buffer the calling thread keeps.
void multiply(const Matrix& m, const float* x, int64_t rows, int64_t width, float* out) {
  thread_local std::vector<uint16_t> bf16_rows;
  thread_local std::vector<float> float_rows;
  if (m.scale == nullptr) {
    const int64_t ld = m.chunks * Bf16::LANES;
    bf16_rows.assign(rows * ld, 0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < width; ++i) bf16_rows[r * ld + i] = to_bf16(x[r * width + i]);
    run<Bf16>(bf16_rows.data(), rows, ld, static_cast<const uint16_t*>(m.tiles), m.n_out, m.chunks, nullptr, out);
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
  if (!PyArg_ParseTuple(tuple, "KLLK", &tiles, &n_out, &chunks, &scale)) return false;
  *m = {reinterpret_cast<const void*>(tiles), n_out, chunks, reinterpret_cast<const float*>(scale)};
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
// few loops over each row, in one call before and one after the attention (which stays torch's).
// Every row is computed on its own, in one order, so its bits do not depend on the other rows.

// out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, the sum of squares in double.
void rms_norm(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) squares += static_cast<double>(xr[i]) * xr[i];
    const float inverse = 1.0f / std::sqrt(static_cast<float>(squares / dim) + eps);
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = xr[i] * inverse * weight[i];
  }
}

// attention_inputs(x, rows, dim, norm, eps, qkv, rope, rotated, head_dim, out): out[r] = rms_norm(x[r]) times
// qkv, whose first `rotated` values (the q and k heads) turn as pairs (a, b) by rope[r]'s (cos, sin) pairs,
// head_dim / 2 of them, alike for every head. x, norm, rope and out: float32; qkv: a Matrix tuple.
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
  thread_local std::vector<float> normed;
  normed.resize(rows * dim);
  rms_norm(reinterpret_cast<const float*>(x), rows, dim, reinterpret_cast<const float*>(norm), (float)eps,
           normed.data());
  float* o = reinterpret_cast<float*>(out);
  multiply(qkv, normed.data(), rows, dim, o);
  const float* turns = reinterpret_cast<const float*>(rope);
  for (int64_t r = 0; r < rows; ++r) {
    float* values = o + r * qkv.n_out;
    const float* turn = turns + r * head_dim;
    for (int64_t i = 0; i < rotated; i += 2) {
      const int64_t pair = (i % head_dim) / 2;
      const float a = values[i], b = values[i + 1], cos = turn[2 * pair], sin = turn[2 * pair + 1];
      values[i] = a * cos - b * sin;
      values[i + 1] = a * sin + b * cos;
    }
  }
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

// block_output(x, attended, rows, dim, heads_width, o, norm, eps, w13, hidden, w2, out): the rest of a
// block after its attention: h = x + attended times o; out = h + (silu(g) * u) times w2, where g and u
// are the halves of rms_norm(h) times w13 (w1 | w3).
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
  thread_local std::vector<float> h, normed, gate_up, gated;
  h.resize(rows * dim);
  normed.resize(rows * dim);
  gate_up.resize(rows * 2 * hidden);
  gated.resize(rows * hidden);
  const float* xs = reinterpret_cast<const float*>(x);
  float* result = reinterpret_cast<float*>(out);
  multiply(o, reinterpret_cast<const float*>(attended), rows, heads_width, h.data());
  for (int64_t i = 0; i < rows * dim; ++i) h[i] += xs[i];
  rms_norm(h.data(), rows, dim, reinterpret_cast<const float*>(norm), (float)eps, normed.data());
  multiply(w13, normed.data(), rows, dim, gate_up.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < hidden; ++i) {
      const float g = gate_up[r * 2 * hidden + i], u = gate_up[r * 2 * hidden + hidden + i];
      gated[r * hidden + i] = g / (1.0f + std::exp(-g)) * u;
    }
  multiply(w2, gated.data(), rows, hidden, result);
  for (int64_t i = 0; i < rows * dim; ++i) result[i] += h[i];
  Py_END_ALLOW_THREADS
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"product", product, METH_VARARGS, "x (float32) @ packed bf16 or int8 weights -> float32"},
    {"attention_inputs", attention_inputs, METH_VARARGS, "a block's normed input times wq|wk|wv, q and k turned"},
    {"block_output", block_output, METH_VARARGS, "the rest of a block after its attention"},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef definition = {PyModuleDef_HEAD_INIT, "emojilm_products", nullptr, -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit_emojilm_products() {
  PyObject* module = PyModule_Create(&definition);
  if (module == nullptr || PyModule_AddIntConstant(module, "TILE_OUT", TILE_OUT) < 0 ||
      PyModule_AddIntConstant(module, "BF16_LANES", Bf16::LANES) < 0 ||
      PyModule_AddIntConstant(module, "INT8_LANES", Int8::LANES) < 0)
    return nullptr;
  return module;
}
