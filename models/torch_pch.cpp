// Compiles the shared precompiled LibTorch header (see the root CMakeLists.txt).
