set terminal pngcairo noenhanced size 1200,700
set output "ns_steps_val.png"
set title "Newton-Schulz steps vs exact polar factor, tiny GPT: validation loss"
set xlabel "step"
set ylabel "val loss"
set grid
set key outside right
plot "data/v00_val.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "quintic 1 step (lr x1)", \
     "data/v01_val.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "quintic 2 steps (lr x1)", \
     "data/v02_val.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "quintic 3 steps (lr x1)", \
     "data/v03_val.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "quintic 5 steps recipe (lr x1)", \
     "data/v04_val.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 1 title "quintic 8 steps (lr x1)", \
     "data/v05_val.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 1 title "Polar Express 1 step (lr x1)", \
     "data/v06_val.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 1 title "Polar Express 2 steps (lr x1)", \
     "data/v07_val.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 1 title "Polar Express 3 steps (lr x1)", \
     "data/v08_val.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 2 title "Polar Express 5 steps (lr x1)", \
     "data/v09_val.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 2 title "Polar Express 8 steps (lr x1)", \
     "data/v10_val.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 2 title "exact polar (SVD) (lr x1)"
set terminal pngcairo noenhanced size 1200,700
set output "ns_steps_train.png"
set title "Newton-Schulz steps vs exact polar factor, tiny GPT: training loss (EMA 0.9)"
set xlabel "step"
set ylabel "train loss"
set grid
set key outside right
plot "data/v00_train.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "quintic 1 step (lr x1)", \
     "data/v01_train.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "quintic 2 steps (lr x1)", \
     "data/v02_train.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "quintic 3 steps (lr x1)", \
     "data/v03_train.dat" using 1:2 with linespoints pointsize 0.4 lc 4 dt 1 title "quintic 5 steps recipe (lr x1)", \
     "data/v04_train.dat" using 1:2 with linespoints pointsize 0.4 lc 5 dt 1 title "quintic 8 steps (lr x1)", \
     "data/v05_train.dat" using 1:2 with linespoints pointsize 0.4 lc 6 dt 1 title "Polar Express 1 step (lr x1)", \
     "data/v06_train.dat" using 1:2 with linespoints pointsize 0.4 lc 7 dt 1 title "Polar Express 2 steps (lr x1)", \
     "data/v07_train.dat" using 1:2 with linespoints pointsize 0.4 lc 8 dt 1 title "Polar Express 3 steps (lr x1)", \
     "data/v08_train.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 2 title "Polar Express 5 steps (lr x1)", \
     "data/v09_train.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 2 title "Polar Express 8 steps (lr x1)", \
     "data/v10_train.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 2 title "exact polar (SVD) (lr x1)"
