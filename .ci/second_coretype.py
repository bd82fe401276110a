"""Print an OPENBLAS_CORETYPE, different from the one this process runs, that this CPU can execute.

CI repeats the BLAS-sensitive tests under it, so that no test depends on which BLAS kernel runs:
Haswell when OpenBLAS picked another core, else SkylakeX on an AVX-512 CPU, else Sandybridge
(forcing a core whose instructions the CPU lacks kills the process with SIGILL).
"""

from threadpoolctl import threadpool_info


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def main() -> None:
    import numpy  # noqa: F401  (loads OpenBLAS so threadpoolctl can see it)

    current = {str(i.get("architecture", "")).lower() for i in threadpool_info() if i["user_api"] == "blas"}
    flags = cpu_flags()
    if "haswell" not in current and {"avx2", "fma"} <= flags:
        print("Haswell")
    elif "avx512f" in flags and "skylakex" not in current:
        print("SkylakeX")
    else:
        print("Sandybridge")


if __name__ == "__main__":
    main()
