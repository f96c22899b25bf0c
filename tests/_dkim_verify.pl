#!/usr/bin/perl
# Verify the DKIM signatures of a message on stdin with Mail::DKIM (Debian's libmail-dkim-perl),
# the public keys served locally instead of by DNS:
#     perl tests/_dkim_verify.pl NAME=RECORD [NAME=RECORD ...] < message.eml
# NAME is "selector._domainkey.domain". Prints "result: ..." and one line per signature.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Net::DNS;

my %records = map { split /=/, $_, 2 } @ARGV;
{
    no warnings 'redefine';
    *Mail::DKIM::DNS::query = sub {
        my ($name, $type) = @_;
        my $record = $records{ lc $name } or return;
        my @chunks = unpack("(A255)*", $record);
        return Net::DNS::RR->new(name => $name, type => 'TXT', txtdata => \@chunks);
    };
}
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (<STDIN>) {
    s/\015?\012/\015\012/;
    $dkim->PRINT($_);
}
$dkim->CLOSE;
print "result: ", $dkim->result, "\n";
foreach my $sig ($dkim->signatures) {
    print "signature: ", $sig->algorithm, " s=", $sig->selector, " ", $sig->result_detail, "\n";
}
