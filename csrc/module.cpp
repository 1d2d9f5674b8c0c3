// The Python module pyext._C: importing it registers the ops (TORCH_LIBRARY in ops.cpp) and
// offers build_info(), which says what this binary was compiled with.
#include <Python.h>

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
  return Py_BuildValue("{s:O,s:s,s:s}", "cuda", cuda, "cuda_archs", archs, "cpu_vec", cpu_vec);
}

PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of pyext's kernels was compiled with."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "pyext's compiled kernels", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
