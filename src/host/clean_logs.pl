# clean_logs, run by perl (perl-base, Essential in Debian) as root inside
# the container or its helper: truncates the log files below ARGV[0] and
# nothing else, whatever the container's processes do meanwhile.
#   perl -e SCRIPT -- LOG_ROOT [NESTED_MOUNT...]
# Every path is opened one component at a time with O_NOFOLLOW and walked
# with fchdir, so no symlink is ever followed; each candidate is opened
# O_NOFOLLOW|O_NONBLOCK (a FIFO cannot block), checked on the open file
# (regular, one link, the log root's device) and truncated through that
# descriptor, so a name swapped after the check cannot redirect it.
# Output, one line each, paths with every byte outside printable ASCII
# escaped as \xHH (a file name cannot forge a line):
#   T <TAB> BYTES_FREED <TAB> PATH   truncated
#   S <TAB> REASON <TAB> PATH        left alone
#   M <TAB> missing <TAB> PATH       the log root does not exist
#   A <TAB> FILES <TAB> BYTES         files truncated beyond the first 1000,
#                                     summed (bounded output, however many)
# S lines stop after the first 1000.
use strict;
use warnings;
use Fcntl qw(O_RDONLY O_WRONLY O_NOFOLLOW O_NONBLOCK O_NOCTTY O_DIRECTORY S_ISREG S_ISDIR);

my ($root, @nested) = @ARGV;
die "usage: LOG_ROOT [NESTED_MOUNT...]\n" unless defined $root && $root =~ m{\A/.};
my %nested = map { $_ => 1 } @nested;
my $DIR = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK;
$| = 1;

sub esc { my $s = shift; $s =~ s/([^\x21-\x5b\x5d-\x7e])/sprintf("\\x%02x", ord $1)/ge; $s }
my ($shown_t, $shown_s, $more_files, $more_bytes) = (0, 0, 0, 0);
sub note {
    my ($tag, $what, $path) = @_;
    if ($tag eq "T" && ++$shown_t > 1000) { $more_files++; $more_bytes += $what; return }
    return if $tag eq "S" && ++$shown_s > 1000;
    print "$tag\t$what\t" . esc($path) . "\n";
}
sub is_log { my $n = shift; $n =~ /\.log\z/ || $n =~ /\.log\./ }

sysopen(my $d, "/", O_RDONLY | O_DIRECTORY) or die "cannot open /: $!\n";
chdir($d) or die "cannot enter /: $!\n";
for my $c (grep { length } split m{/}, $root) {
    my $n;
    unless (sysopen($n, $c, $DIR)) {
        if ($!{ENOENT}) { note("M", "missing", $root); exit 0 }
        die "cannot open " . esc($root) . " without following a symlink: $!\n";
    }
    chdir($n) or die "cannot enter " . esc($root) . ": $!\n";
    $d = $n;
}
my $dev = (stat($d))[0];
(my $top = $root) =~ s{/+\z}{};
walk($d, $top, 0);
print "A\t$more_files\t$more_bytes\n" if $more_files;
exit 0;

sub walk {
    my ($dh, $path, $depth) = @_;
    chdir($dh) or do { note("S", "cannot enter: $!", $path); return };
    # A database's data directory is never cleaned, whatever its files are called.
    if (lstat("PG_VERSION")) { note("S", "database data directory", $path); return }
    opendir(my $ls, ".") or do { note("S", "cannot list: $!", $path); return };
    my @names = sort grep { $_ ne "." && $_ ne ".." } readdir($ls);
    closedir($ls);
    for my $n (@names) {
        my $p = "$path/$n";
        my @l = lstat($n) or next;
        if (-l _) { note("S", "symlink", $p) if is_log($n); next }
        if (-d _) {
            if ($nested{$p} || $l[0] != $dev) { note("S", "another mount", $p); next }
            if ($depth >= 64) { note("S", "too deep", $p); next }
            my $sub;
            unless (sysopen($sub, $n, $DIR)) { note("S", "cannot open: $!", $p); next }
            my @s = stat($sub);
            if (S_ISDIR($s[2]) && $s[0] == $dev) { walk($sub, $p, $depth + 1) } else { note("S", "changed", $p) }
            close($sub);
            chdir($dh) or die "cannot return to " . esc($path) . ": $!\n";
            next;
        }
        next unless is_log($n);
        unless (-f _) { note("S", "not a regular file", $p); next }
        my $f;
        unless (sysopen($f, $n, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY)) { note("S", "cannot open: $!", $p); next }
        my @s = stat($f);
        if (!@s || !S_ISREG($s[2])) { note("S", "not a regular file", $p) }
        elsif ($s[3] != 1) { note("S", "$s[3] hard links", $p) }
        elsif ($s[0] != $dev) { note("S", "another filesystem", $p) }
        elsif ($s[7] > 0) {
            # Space really released: a sparse file frees only its blocks.
            my $freed = $s[7];
            $freed = $s[12] * 512 if $s[12] * 512 < $freed;
            if (truncate($f, 0)) { note("T", $freed, $p) } else { note("S", "truncate failed: $!", $p) }
        }
        close($f);
    }
}
