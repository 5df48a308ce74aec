# gnuplot -e "dat='bench/results/plot.dat'; bnd='bench/results/plot-bounds.dat'; out='bench/tok_s_vs_limit.png'; ram=23.5" bench/plot.gp
# Decode tok/s of the 48-layer model against the cgroup memory limit (bench/report.py writes the data).
# plot.dat columns: limit_gib, fm t2 cold, fm t2 warm, fm t1 cold, llama lazy t2 cold, llama lazy t2 warm,
#                   llama default t2 cold, llama default t2 warm   (NaN = not run)
if (!exists("dat")) dat = 'bench/results/plot.dat'
if (!exists("bnd")) bnd = 'bench/results/plot-bounds.dat'
if (!exists("out")) out = 'bench/tok_s_vs_limit.png'
if (!exists("ram")) ram = 24
set terminal pngcairo size 1200,600 font "DejaVu Sans,11" noenhanced
set output out
set title "Qwen3-30B-A3B-shaped MoE (18.6 GB Q4_K_M, random weights), 2-core VM, 24 GiB RAM"
set xlabel "memory limit (cgroup v1, GiB; rightmost = no limit)"
set ylabel "decode tokens/s (log scale)"
set logscale x 2
set logscale y 10
set xrange [1.6:ram*1.35]
set yrange [0.02:20]
set xtics ("2" 2, "4" 4, "8" 8, sprintf("none (%.0f GiB RAM)", ram) ram)
set grid ytics mytics xtics
set key outside right center vertical Left reverse width 1 spacing 1.3
set datafile missing "NaN"
plot dat using 1:2 with linespoints lw 2 pt 7 ps 1.3 lc rgb "#1f77b4" title "fm-run -t 2, cold", \
     dat using 1:3 with linespoints lw 2 pt 5 ps 1.1 lc rgb "#1f77b4" dt 2 title "fm-run -t 2, warm", \
     dat using 1:4 with linespoints lw 1.5 pt 13 ps 1.2 lc rgb "#17becf" dt 3 title "fm-run -t 1, cold", \
     dat using 1:5 with linespoints lw 2 pt 9 ps 1.4 lc rgb "#d62728" title "llama.cpp lazy mmap, 2 threads, cold", \
     dat using 1:6 with linespoints lw 2 pt 11 ps 1.4 lc rgb "#d62728" dt 2 title "llama.cpp lazy mmap, warm", \
     dat using 1:7 with points pt 4 ps 1.6 lc rgb "#ff7f0e" title "llama.cpp default (repacked), cold", \
     dat using 1:8 with points pt 12 ps 1.6 lc rgb "#ff7f0e" title "llama.cpp default, warm", \
     bnd using 1:2 with points pt 6 ps 3 lw 2 lc rgb "black" title "upper bound (llama.cpp run timed out)"
