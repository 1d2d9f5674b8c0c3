// The Python module pyext._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp) and
// offers build_info(), which says what this binary was compiled with.
#include <Python.h>
#include <ATen/Parallel.h>

#include <atomic>

#define PYEXT_STR2(...) #__VA_ARGS__
#define PYEXT_STR(...) PYEXT_STR2(__VA_ARGS__)

namespace {

PyObject* build_info(PyObject*, PyObject*) {
#ifdef PYEXT_WITH_CUDA
  PyObject* cuda = Py_True;
  const char* archs = PYEXT_STR(PYEXT_CUDA_ARCHS);
#else
  PyObject* cuda = Py_False;
  const char* archs = "";
#endif
#if defined(CPU_CAPABILITY_AVX512)
  const char* cpu_vec = "avx512";
#elif defined(CPU_CAPABILITY_AVX2)
  const char* cpu_vec = "avx2";
#else
  const char* cpu_vec = "default";
#endif
#ifdef _OPENMP
  PyObject* openmp = Py_True;
#else
  PyObject* openmp = Py_False;
#endif
  return Py_BuildValue("{s:O,s:s,s:s,s:O}", "cuda", cuda, "cuda_archs", archs, "cpu_vec", cpu_vec, "openmp", openmp);
}

// How many threads an at::parallel_for inside this library runs on now (at most torch.get_num_threads()).
// Its parallel region is compiled into each caller: without OpenMP here it would run on one thread.
PyObject* parallel_for_threads(PyObject*, PyObject*) {
  std::atomic<int> used{0};
  Py_BEGIN_ALLOW_THREADS
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    const int mine = at::get_thread_num() + 1;  // a running maximum of the thread numbers seen
    int seen = used.load();
    while (seen < mine && !used.compare_exchange_weak(seen, mine)) {
    }
  });
  Py_END_ALLOW_THREADS
  return PyLong_FromLong(used.load());
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of pyext's kernels was compiled with."},
    {"_parallel_for_threads", parallel_for_threads, METH_NOARGS,
     "How many threads at::parallel_for runs on inside pyext's kernels now."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "pyext's compiled kernels", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
