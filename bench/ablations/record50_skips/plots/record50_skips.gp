set terminal pngcairo noenhanced size 1200,700
set output "record50_skips_val.png"
set title "Record 50 at CPU size: single gated skip vs record 32's gated U-net vs none: validation loss"
set xlabel "step"
set ylabel "val loss"
set grid
set key outside right
plot "data/record50_skips_p0_s00.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "single gated skip 1>2 recipe (lr x1)", \
     "data/record50_skips_p0_s01.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "gated U-net 1>2 0>3 (lr x1)", \
     "data/record50_skips_p0_s02.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "no skip (lr x1)"
set terminal pngcairo noenhanced size 1200,700
set output "record50_skips_train.png"
set title "Record 50 at CPU size: single gated skip vs record 32's gated U-net vs none: training loss (EMA 0.9)"
set xlabel "step"
set ylabel "train loss"
set grid
set key outside right
plot "data/record50_skips_p1_s00.dat" using 1:2 with linespoints pointsize 0.4 lc 1 dt 1 title "single gated skip 1>2 recipe (lr x1)", \
     "data/record50_skips_p1_s01.dat" using 1:2 with linespoints pointsize 0.4 lc 2 dt 1 title "gated U-net 1>2 0>3 (lr x1)", \
     "data/record50_skips_p1_s02.dat" using 1:2 with linespoints pointsize 0.4 lc 3 dt 1 title "no skip (lr x1)"
