# bench/build.sh, Dockerfile "multi": 10 instructions, two stages, the second copying
# from the first. The context (bench/build/make-context.py multi) has src/module-NN.txt;
# the bench changes src/module-00.txt for its "changed" builds.
FROM fixture/app:1 AS build
RUN busybox mkdir -p /out/gen && busybox seq 1 5000 > /out/gen/numbers.txt
COPY src/ /src/
RUN busybox cat /src/*.txt > /out/all.txt && busybox sha256sum /src/*.txt > /out/SUMS
RUN busybox tar -cf /out/src.tar -C /src . && busybox wc -l /out/all.txt > /out/lines.txt
FROM fixture/app:1
COPY --from=build /out/ /app/
ENV APP_HOME=/app BENCH_CASE=multi
LABEL org.berth.bench="build" org.berth.bench.case="multi"
CMD ["busybox sha256sum /app/all.txt"]
