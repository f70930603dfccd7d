# bench/build.sh, Dockerfile "files": one COPY of many small files (200 dirs x 100 files
# of 100 bytes by default: bench/build/make-context.py files). The bench changes
# files/d000/f000.txt for its "changed" builds.
FROM fixture/app:1
COPY files/ /data/
LABEL org.berth.bench="build" org.berth.bench.case="files"
CMD ["busybox find /data -type f | busybox sort | busybox xargs busybox cat | busybox sha256sum"]
