# gnuplot -e "dat='bench/results/plot.dat'; out='bench/tok_s_vs_limit.png'; ram=23.5" bench/plot.gp
# Decode tok/s against the cgroup memory limit, fm and llama.cpp, cold and warm.
if (!exists("dat")) dat = 'bench/results/plot.dat'
if (!exists("out")) out = 'bench/tok_s_vs_limit.png'
if (!exists("ram")) ram = 24
set terminal pngcairo size 900,560 font "DejaVu Sans,11"
set output out
set title "Qwen3-30B-A3B-shaped MoE, 18.6 GB Q4_K_M, random weights, 2 threads, 2 cores"
set xlabel "memory limit (cgroup v1, GiB; rightmost = no limit)"
set ylabel "decode tokens / s (log scale)"
set logscale x 2
set logscale y 10
set xrange [1.6:ram*1.35]
set xtics ("2" 2, "4" 4, "8" 8, sprintf("none\n(%.0f GiB RAM)", ram) ram)
set grid ytics mytics xtics
set key top left box opaque
set datafile missing "NaN"
plot dat using 1:2 with linespoints lw 2 pt 7 ps 1.3 lc rgb "#1f77b4" title "fm-run, cold cache", \
     dat using 1:3 with linespoints lw 2 pt 5 ps 1.1 lc rgb "#1f77b4" dt 2 title "fm-run, warm", \
     dat using 1:4 with linespoints lw 2 pt 9 ps 1.4 lc rgb "#d62728" title "llama.cpp (lazy mmap under a limit, default without), cold", \
     dat using 1:5 with linespoints lw 2 pt 11 ps 1.4 lc rgb "#d62728" dt 2 title "llama.cpp, warm"
